"""Stale registrations, duplicated messages, cookies from the wrong place, and busy domains."""

from __future__ import annotations

import json
import time

import pytest

from broker import keys
from broker.queues import DISPATCHER, host_queue
from tasks.errors import Refused
from tasks.publish import PHASE_TASK, POLL_TASK, START_TASK, send
from tasks.runtime import runtime
from tasks.submission import MigrationRequest, submit
from tests.conftest import TWIN_UUID
from tests.helpers import domain_on, live_copies, migrate, running_vm, unique, wait_terminal


@pytest.fixture
def stale_registration(fleet):
    """Make p1b's registration claim v1, v2 and v3, as if it was downgraded since it registered."""
    client = runtime().redis
    original = client.get(keys.host_info("p1b"))
    client.set(keys.host_info("p1b"), json.dumps({**json.loads(original), "protocols": [1, 2, 3]}))
    yield
    client.set(keys.host_info("p1b"), original)


def test_stale_registry_falls_back_to_a_common_version(stale_registration):
    vm = running_vm("pxa")
    record = migrate(vm["name"], "pxa", "p1b", flags=["live"])

    assert record.state == "completed", record.error
    assert record.protocol == 1
    refused = [(p.version, p.name) for p in record.phases if p.outcome == "failed"]
    assert refused == [(3, "prepare"), (2, "prepare")]
    assert all(p.error["code"] == "VERSION_UNSUPPORTED" for p in record.phases if p.error)
    assert any("falling back to v2" in w for w in record.warnings)
    assert live_copies(vm["uuid"]) == [("p1b", vm["name"], "running")]


def test_stale_registry_with_a_rename_fails_cleanly(stale_registration):
    vm = running_vm("pxa")
    record = migrate(vm["name"], "pxa", "p1b", dname=unique("new"), flags=["live"])

    assert record.state == "failed"
    assert record.error["code"] == "VERSION_UNSUPPORTED"
    assert "cannot rename" in record.error["message"]
    assert live_copies(vm["uuid"]) == [("pxa", vm["name"], "running")]


def test_duplicated_messages_change_nothing(fleet):
    """Re-send the start, every phase and a poll while the migration runs and after it ended."""
    vm = running_vm("slow", memory_mib=1024)  # 4 s of transfer on slow's 256 MiB/s link
    record = submit(MigrationRequest(vm["name"], "slow", "pxa", flags=["live"]))
    deadline = time.monotonic() + 20
    running = runtime().store.get(record.id)
    while not (running.step and running.step.status == "polling") and time.monotonic() < deadline:
        time.sleep(0.02)
        running = runtime().store.get(record.id)
    assert running.state == "perform" and running.step.status == "polling"

    def resend_everything(current):
        send(START_TASK, [record.id], DISPATCHER)
        steps = [(seq, p.name, p.cancelled) for seq, p in enumerate(current.phases, start=1)]
        if current.step:
            steps.append((current.step.seq, current.step.phase, current.step.cancelled))
        for seq, phase, cancelled in steps:
            host = (
                current.source if phase in ("begin", "perform", "confirm") else current.destination
            )
            message = {
                "migration": record.id,
                "attempt": current.attempt,
                "seq": seq,
                "phase": phase,
                "cancelled": cancelled,
            }
            send(PHASE_TASK, [message], host_queue(host))
            send(POLL_TASK, [{**message, "poll": 0}], host_queue(host))

    resend_everything(running)
    final = wait_terminal(record.id)
    resend_everything(final)
    time.sleep(1.0)

    after = runtime().store.get(record.id)
    assert final.state == "completed"
    assert [p.name for p in after.phases] == ["begin", "prepare", "perform", "finish", "confirm"]
    assert after.to_json() == final.to_json()
    assert live_copies(vm["uuid"]) == [("pxa", vm["name"], "running")]


def test_migration_between_hosts_with_one_host_uuid_is_refused(fleet):
    """twin-a and twin-b share a host uuid: the destination's cookie check refuses the move."""
    client = runtime().redis
    uuids = {json.loads(client.get(keys.host_info(h)))["host_uuid"] for h in ("twin-a", "twin-b")}
    assert uuids == {TWIN_UUID}
    vm = running_vm("twin-a")

    record = migrate(vm["name"], "twin-a", "twin-b", flags=["live"])

    assert record.state == "failed"
    assert record.error["code"] == "SAME_HOST"
    assert "same host" in record.error["message"]
    assert live_copies(vm["uuid"]) == [("twin-a", vm["name"], "running")]


def test_destination_without_room_refuses_prepare(fleet):
    vm = running_vm("pxa", memory_mib=2048)  # 'small' has 1024 MiB in all
    record = migrate(vm["name"], "pxa", "small", flags=["live"])
    assert record.state == "failed"
    assert record.error["code"] == "NO_CAPACITY"
    assert live_copies(vm["uuid"]) == [("pxa", vm["name"], "running")]


def test_second_migration_of_a_busy_domain_is_refused_at_once(fleet):
    vm = running_vm("slow", memory_mib=1024)
    first = submit(MigrationRequest(vm["name"], "slow", "pxb", flags=["live"]))
    with pytest.raises(Refused) as refused:
        submit(MigrationRequest(vm["name"], "slow", "pxa", flags=["live"]))
    assert refused.value.code == "MIGRATION_IN_PROGRESS"
    assert first.id in refused.value.message
    assert wait_terminal(first.id).state == "completed"
    assert domain_on("pxa", vm["name"]) is None
