"""What the previous release wrote to Redis, read by this one: its registration, inventory,
records (one running, one queued), queue, admission slot, events and v3 cookie, as
tests/formats/capture.py captured them from 0.3.0 itself. (The other direction, and the live
mix, is tests/integration/test_rolling_upgrade.py.)"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tasks.admission import slot_holders
from tasks.queue_store import queue_page
from tasks.registry import get_host, read_inventory
from tasks.store import RecordStore
from tests.conftest import require_redis
from tests.redis_server import private_redis
from workers.cookie import parse_cookie

CAPTURED = sorted((Path(__file__).resolve().parents[1] / "formats").glob("*.json"))


def restore(client: redis.Redis, keys: dict[str, object]) -> None:
    for key, value in keys.items():
        if isinstance(value, str):
            client.set(key, value)
        elif "hash" in value:
            client.hset(key, mapping=value["hash"])
        elif "set" in value:
            client.sadd(key, *value["set"])
        elif "zset" in value:
            client.zadd(key, dict(value["zset"]))
        elif "stream" in value:
            for fields in value["stream"]:
                client.xadd(key, fields)


@pytest.fixture
def restored(tmp_path, request):
    require_redis()
    document = json.loads(request.param.read_text())
    with private_redis(tmp_path) as (port, client):
        restore(client, document["keys"])
        yield document, client, f"redis://127.0.0.1:{port}/0"


@pytest.mark.parametrize("restored", CAPTURED, ids=[p.stem for p in CAPTURED], indirect=True)
def test_this_release_reads_what_a_previous_one_wrote(restored, tmp_path):
    document, client, url = restored
    host = get_host(client, "hv01")
    assert host is not None and host.version == document["version"]
    assert host.protocols == [1, 2, 3] and host.copy_storage is False  # it could not copy disks
    assert host.endpoint["migration_address"] == "10.0.0.1"
    assert [d["name"] for d in read_inventory(client, "hv01")] == ["web"]

    store = RecordStore(client, 3600)
    running, queued = store.get("m-running"), store.get("m-queued")
    assert running.state == "perform" and running.step.phase == "perform"
    assert running.exchange["uri"] == "tcp://10.0.0.2:49152" and running.callback is None
    assert running.migrate_disks == [] and queued.window == "nights"
    entries, _ = queue_page(client, ["nights"], 0, dt.datetime.now(dt.UTC))
    assert [e.id for e in entries] == ["m-queued"]
    assert set(slot_holders(client)) == {"m-running"}
    assert parse_cookie(document["cookie"]).name == "web"

    env = {"VMIGRATE_BROKER_URL": url, "VMIGRATE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for args in (["hosts", "--json"], ["list", "--json"], ["show", "m-running", "--json"]):
        run = subprocess.run(
            [sys.executable, "-m", "vmigrate.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)
