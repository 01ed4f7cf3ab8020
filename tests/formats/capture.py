"""Capture what a release writes to Redis, for tests/unit/test_previous_formats.py to read with
the current code. Run it with the release's own interpreter and a Redis database to spare:

    /path/to/release-venv/bin/python -P tests/formats/capture.py redis://127.0.0.1:6379/14 OUT.json

It writes through the release's own functions (a registration, an inventory, records of each
kind, a queue entry, an admission slot, a v3 cookie) and dumps every ``vmigrate:`` key it wrote.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata

import redis

from tasks.admission import Candidate, Limits, take_slots
from tasks.queue_store import enqueue
from tasks.record import MigrationRecord, PhaseRun, StepState
from tasks.registry import HostInfo, publish_inventory, register
from tasks.release_rules import QueueEntry
from tasks.store import RecordStore
from workers.cookie import Cookie


def write(client: redis.Redis) -> str:
    info = HostInfo("hv01", [1, 2, 3], "sim", 65536, 8, "5a1e5a1e-0000-4000-8000-000000000001")
    info.endpoint = {"migration_address": "10.0.0.1", "port_min": 49152, "port_max": 49215}
    register(client, info, 60)
    domain = {"name": "web", "uuid": "u-web", "state": "running", "memory_kib": 262144, "vcpus": 1}
    publish_inventory(client, "hv01", [domain])
    store = RecordStore(client, 3600)
    running = MigrationRecord("m-running", "web", "hv01", "hv02", flags=["live"], protocol=3)
    running.state = "perform"
    running.step = StepState(seq=3, phase="perform", cancelled=False, status="polling", poll=2)
    running.phases = [PhaseRun("begin", "hv01", 3, started="2026-12-01T12:00:00.000Z")]
    running.exchange = {"cookie": "<qemu-migration/>", "uri": "tcp://10.0.0.2:49152"}
    store.create(running)
    store.create(MigrationRecord("m-queued", "db", "hv01", "hv02", state="queued", window="nights"))
    enqueue(client, 600, QueueEntry("m-queued", "hv01", "hv02", windows=["nights"]))
    take_slots(client, [Candidate("m-running", "hv01", "hv02", 100)], Limits(2, 2, 5, 0))
    return Cookie("web", "u-web", "hv01", "5a1e5a1e-0000-4000-8000-000000000001").to_xml()


def dump(client: redis.Redis) -> dict[str, object]:
    found: dict[str, object] = {}
    for key in sorted(client.scan_iter("vmigrate:*")):
        kind = client.type(key)
        if kind == "string":
            found[key] = client.get(key)
        elif kind == "hash":
            found[key] = {"hash": client.hgetall(key)}
        elif kind == "set":
            found[key] = {"set": sorted(client.smembers(key))}
        elif kind == "zset":
            found[key] = {"zset": client.zrange(key, 0, -1, withscores=True)}
        elif kind == "stream":
            found[key] = {"stream": [fields for _id, fields in client.xrange(key)]}
    return found


def main(url: str, out: str) -> None:
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    cookie = write(client)
    document = {"version": metadata.version("vmigrate"), "cookie": cookie, "keys": dump(client)}
    client.flushdb()
    with open(out, "w") as handle:
        json.dump(document, handle, indent=1, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
