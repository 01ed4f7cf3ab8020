"""A rolling upgrade: the previous release (built from the commit docs/releases.md records) and
this checkout run one fleet on one Redis. VMs migrate old→old, old→new, new→old, by old and new
CLIs; then each host is drained, upgraded and undrained in turn, and last the old dispatcher,
while a stream of migrations (some queued) goes on. Every VM ends on exactly one host."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
import redis

from tasks.registry import read_inventory
from tasks.store import RecordStore
from tests.conftest import FAST_RECOVERY, require_redis
from tests.helpers import vm_xml, wait_terminal
from tests.previous_release import Release, build, previous_release
from tests.redis_server import private_redis
from vmigrate.fleet import LocalFleet

HOSTS = ["u1", "u2", "u3", "u4"]
VMS = [f"uvm{i}" for i in range(6)]
NEW_CLI = [sys.executable, "-m", "vmigrate.cli"]


@pytest.fixture(scope="module")
def previous() -> Release:
    version, commit = previous_release()
    if version == metadata.version("vmigrate"):
        pytest.fail(f"this checkout still calls itself {version}, the last release's number")
    return build(version, commit)


@pytest.fixture
def own_redis(tmp_path):
    require_redis()
    with private_redis(tmp_path) as (port, client):
        yield f"redis://127.0.0.1:{port}/0", client


@dataclass
class Bed:
    env: dict[str, str]
    home: Path
    previous: Release
    client: redis.Redis
    acknowledged: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, cli: list[str], *args: str) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "VMIGRATE_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}
        full = {**os.environ, **env}
        return subprocess.run(
            [*cli, *args], env=full, capture_output=True, text=True, timeout=120, cwd=self.home
        )

    def migrate(self, cli: list[str], vm: str, source: str, destination: str, *extra: str) -> str:
        done = self.run(cli, "migrate", vm, "--from", source, "--to", destination, "--live", *extra)
        assert done.returncode == 0, (cli[0], done.stderr)
        migration_id = done.stdout.strip().splitlines()[0]
        with self.lock:
            self.acknowledged.append(migration_id)
        return migration_id

    def ended(self, migration_id: str):
        return wait_terminal(migration_id, 120, RecordStore(self.client, 3600))

    def where(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {vm: [] for vm in VMS}
        for host in HOSTS:
            for dom in read_inventory(self.client, host) or []:
                if dom["name"] in found and dom["state"] in ("running", "paused"):
                    found[dom["name"]].append(host)
        return found


def move(bed: Bed, cli: list[str], vm: str, destination: str) -> None:
    """Migrate ``vm`` from where it is to ``destination`` and check that it arrived."""
    source = bed.where()[vm][0]
    record = bed.ended(bed.migrate(cli, vm, source, destination))
    assert record.state == "completed", (vm, source, destination, record.error)
    assert bed.where()[vm] == [destination]


def keep_migrating(bed: Bed, stop: threading.Event, avoid: list[str]) -> None:
    """A stream, from both CLIs: each VM in turn to the next host not being upgraded; every
    third one queued for a few seconds later."""
    turn = 0
    while not stop.is_set():
        vm = VMS[turn % len(VMS)]
        turn += 1
        here = bed.where()[vm]
        targets = [h for h in HOSTS if h not in here and h not in avoid]
        if len(here) != 1 or here[0] in avoid or not targets:
            time.sleep(0.2)
            continue
        extra = ()
        if turn % 3 == 0:
            due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
            extra = ("--not-before", due.isoformat())
        cli = bed.previous.cli if turn % 2 else NEW_CLI
        bed.ended(bed.migrate(cli, vm, here[0], targets[turn % len(targets)], *extra))


def test_old_and_new_releases_share_a_fleet_through_a_rolling_upgrade(
    previous, own_redis, tmp_path
):
    url, client = own_redis
    home = tmp_path / "home"
    env = {"VMIGRATE_BROKER_URL": url, **FAST_RECOVERY, "VMIGRATE_CONFIG": ""}
    old = LocalFleet(env, home, python=str(previous.python))
    new = LocalFleet(env, home)
    bed = Bed(env, home, previous, client)
    stop = threading.Event()
    try:
        for host in HOSTS[:3]:
            old.start_host(host, "--link-mibps", "512")
        new.start_host("u4", "--link-mibps", "512")
        old.start_dispatcher("old-dispatcher")
        new.start_dispatcher("new-dispatcher")
        old.wait_ready(client, HOSTS)
        versions = {
            h["name"]: h["version"] for h in json.loads(bed.run(NEW_CLI, "hosts", "--json").stdout)
        }
        assert versions == {"u1": previous.version, "u2": previous.version,
                            "u3": previous.version, "u4": metadata.version("vmigrate")}  # fmt: skip
        for i, vm in enumerate(VMS):
            path = tmp_path / f"{vm}.xml"
            path.write_text(vm_xml(vm, memory_mib=256))
            defined = bed.run(NEW_CLI, "define", HOSTS[i % 3], str(path), "--start")
            assert defined.returncode == 0, defined.stderr

        move(bed, previous.cli, "uvm0", "u2")  # old -> old, by the old CLI
        move(bed, NEW_CLI, "uvm1", "u4")  # old -> new, by the new CLI
        move(bed, previous.cli, "uvm1", "u3")  # new -> old, by the old CLI
        move(bed, NEW_CLI, "uvm2", "u4")  # old -> new

        for host in HOSTS[:3]:  # one at a time, as docs/operations.md says
            avoid = [host]
            stream = threading.Thread(target=keep_migrating, args=(bed, stop, avoid), daemon=True)
            stream.start()
            drained = bed.run(NEW_CLI, "drain", host, "--wait", "--json")
            assert drained.returncode == 0, drained.stderr
            assert all(i["state"] == "completed" for i in json.loads(drained.stdout))
            old.stop(host)
            new.start_host(host, "--link-mibps", "512")
            new.wait_ready(client, [host])
            assert bed.run(NEW_CLI, "undrain", host).returncode == 0
            stop.set()
            stream.join(180)
            stop.clear()
            vm = next(v for v, hosts in bed.where().items() if hosts != [host])
            move(bed, previous.cli, vm, host)  # onto the upgraded host, by the old CLI
        old.stop("old-dispatcher")
        new.start_dispatcher("dispatcher-upgraded")
        move(bed, NEW_CLI, "uvm3", "u1")

        records = [bed.ended(m) for m in bed.acknowledged]
        assert len(records) >= 10
        assert all(r.state == "completed" for r in records), [
            (r.id, r.state, r.error) for r in records if r.state != "completed"
        ]
        assert all(len(hosts) == 1 for hosts in bed.where().values()), bed.where()
        hosts = json.loads(bed.run(NEW_CLI, "hosts", "--json").stdout)
        assert {h["version"] for h in hosts} == {metadata.version("vmigrate")}
        assert all(h["alive"] for h in hosts)
        print(
            f"\n{len(records)} migrations across the upgrade from {previous.version}, all completed"
        )
    finally:
        stop.set()
        old.stop_all()
        new.stop_all()
