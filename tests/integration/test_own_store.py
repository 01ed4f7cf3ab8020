"""Submission and scheduling with a store of their own: a Runtime built for a private redis-server
and passed in, no worker and no dispatcher. What a tick admits, and what it hands on, is read
straight from that store."""

from __future__ import annotations

import datetime as dt
import tomllib

import pytest

from broker.app import create_app
from broker.queues import DISPATCHER
from broker.security import load_keyring
from broker.settings import Settings
from tasks.ending import finished
from tasks.errors import Refused
from tasks.registry import HostInfo, publish_inventory, register
from tasks.release_rules import load_windows
from tasks.runtime import Runtime
from tasks.scheduler import tick
from tasks.states import State
from tasks.store import RecordStore
from tasks.submission import MigrationRequest, submit
from tasks.windows import next_open
from tests.conftest import CLOSED_AND_ALWAYS, require_redis
from tests.redis_server import private_redis

WINDOWS = tomllib.loads(CLOSED_AND_ALWAYS)["windows"]  # the suite's closed and open windows


@pytest.fixture
def own(tmp_path):
    require_redis()
    with private_redis(tmp_path) as (port, client):
        yield from _own_fleet(tmp_path, port, client)


def _own_fleet(tmp_path, port, client):
    """Two hosts registered on ``client``'s Redis and a runtime of its own for it."""
    settings = Settings(
        broker_url=f"redis://127.0.0.1:{port}/0", fleet=2, windows=WINDOWS, ageing_seconds=0
    )
    app = create_app(settings)
    keyring = load_keyring({}, None, tmp_path)
    rt = Runtime(app, settings, client, RecordStore(client, 3600), keyring)
    for host in ("left", "right"):
        register(client, HostInfo(host, [1, 2, 3], "sim", 65536, 8, f"uuid-{host}"), 60)
    vms = [f"vm{i}" for i in range(4)]
    publish_inventory(
        client,
        "left",
        [
            {"name": n, "uuid": f"u-{n}", "state": "running", "memory_kib": 1, "vcpus": 1}
            for n in vms
        ],
    )
    try:
        yield rt
    finally:
        app.close()


def window_open_at(rt: Runtime) -> dt.datetime:
    """A moment inside the 'closed' window (a minute on the day after tomorrow)."""
    window = load_windows(rt.settings.windows)["closed"]
    return next_open(window, dt.datetime.now(dt.UTC)) + dt.timedelta(seconds=5)


def start_messages(rt: Runtime) -> int:
    return int(rt.redis.llen(DISPATCHER))


def test_a_tick_with_its_own_store_admits_up_to_the_limit_and_hands_on_the_rest(own):
    rt = own
    ids = [
        submit(MigrationRequest(f"vm{i}", "left", "right", window="closed", priority=i), rt).id
        for i in range(3)
    ]
    assert {rt.store.get(i).state for i in ids} == {State.QUEUED}
    assert start_messages(rt) == 0

    now = window_open_at(rt)
    counts = tick(now, rt)
    assert counts["started"] == 2
    states = {i: rt.store.get(i).state for i in ids}
    assert states == {ids[2]: "pending", ids[1]: "pending", ids[0]: "waiting"}  # by priority
    assert start_messages(rt) == 2  # a start message for each, left for a dispatcher

    ended = rt.store.update(ids[2], lambda r: r.move_to(State.FAILED) or True)[0]
    finished(ended, rt)  # its slot frees, and a tick is asked for
    assert start_messages(rt) == 3
    assert tick(now, rt)["started"] == 1
    assert rt.store.get(ids[0]).state == "pending"


def test_submission_with_its_own_store_refuses_what_it_must(own):
    rt = own
    first = submit(MigrationRequest("vm3", "left", "right"), rt)
    assert rt.store.get(first.id).state == "pending" and start_messages(rt) == 1
    with pytest.raises(Refused) as busy:
        submit(MigrationRequest("vm3", "left", "right"), rt)
    assert busy.value.code == "MIGRATION_IN_PROGRESS"
    with pytest.raises(Refused) as unknown:
        submit(MigrationRequest("vm3", "left", "nowhere"), rt)
    assert unknown.value.code == "HOST_UNKNOWN"
