"""What an operator configures, through the live scheduler: windows assigned to hosts and groups,
a bandwidth budget per host, ageing, cancel while waiting or pending, metrics of the dispatcher and
the API. A fleet of its own (own redis-server, own configuration), driven through the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
import redis

from tests.conftest import CLOSED_AND_ALWAYS, FAST_RECOVERY, require_redis
from tests.helpers import cli, metrics_text, start_with_metrics, vm_xml, wait_until
from tests.redis_server import free_port, launch_redis, on_free_port, private_args
from vmigrate.fleet import LocalFleet

CONFIG = f"""
[limits]
outbound_per_host = 2
inbound_per_host = 2
fleet = 5
bandwidth_per_host_mibps = 300
ageing_seconds = 0.5
{CLOSED_AND_ALWAYS}
[hosts.open1]
window = "always"

[groups.rack9]
hosts = ["shut1", "shut2"]
window = "closed"
"""
DESTINATIONS = ["cd1", "cd2", "cd3", "cd4", "open1", "shut1", "shut2"]


class Fleet:
    def __init__(self, env, home, client, local):
        self.env, self.home, self.client, self.local = env, home, client, local

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = cli(self.env, self.home, *args)
        if check:
            assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    def vm(self, host: str, name: str, memory_mib: int = 1024) -> None:
        path = self.home / f"{name}.xml"
        path.write_text(vm_xml(name, memory_mib=memory_mib))
        self.run("define", host, str(path), "--start")

    def migrate(self, name: str, source: str, destination: str, *options: str) -> str:
        out = self.run("migrate", name, "--from", source, "--to", destination, "--live", *options)
        return out.stdout.strip().split()[-1]

    def domains(self, host: str) -> dict[str, dict]:
        return {d["name"]: d for d in json.loads(self.run("domains", host, "--json").stdout)}

    def show(self, migration_id: str) -> dict:
        return json.loads(self.run("show", migration_id, "--json").stdout)

    def ended(self, migration_id: str, timeout: float = 90) -> dict:
        return wait_until(
            lambda: (r := self.show(migration_id))["state"] in TERMINAL and r,
            f"migration {migration_id} ended",
            timeout=timeout,
            every=0.2,
        )


TERMINAL = {"completed", "failed", "cancelled", "expired"}


def started(record: dict) -> str:
    return min(p["started"] for p in record["phases"])


def finished_at(record: dict) -> str:
    return max(p["ended"] for p in record["phases"])


@pytest.fixture(scope="module")
def configured(tmp_path_factory):
    require_redis()  # the same dependency: redis-server
    home = tmp_path_factory.mktemp("configured")
    config = home / "vmigrate.toml"
    config.write_text(CONFIG)

    def start(port):
        client = redis.Redis(port=port, decode_responses=True, socket_connect_timeout=0.5)
        return launch_redis(private_args(port, home), client), client

    port, (server, client) = on_free_port(start)
    env = {
        "VMIGRATE_BROKER_URL": f"redis://127.0.0.1:{port}/0",
        "VMIGRATE_CONFIG": str(config),
        **FAST_RECOVERY,
    }
    local = LocalFleet(env, home)
    try:
        local.start_host("cs", "--link-mibps", "256")  # 1024 MiB: 4 s
        local.start_host("cb")
        local.start_hosts(DESTINATIONS)
        dispatcher_port = start_with_metrics(
            local,
            "dispatcher",
            lambda p: local._spawn("dispatcher", ["dispatcher", "--metrics-port", str(p)]),
        )
        local.wait_ready(client, ["cs", "cb", *DESTINATIONS])
        fleet = Fleet(env, home, client, local)
        fleet.dispatcher_metrics = dispatcher_port
        yield fleet
    finally:
        local.stop_all()
        server.kill()
        server.wait(10)


def overlap(a: dict, b: dict) -> bool:
    return started(a) < finished_at(b) and started(b) < finished_at(a)


def test_a_group_window_holds_its_hosts_and_a_host_window_lets_its_host_run(configured):
    f = configured
    f.vm("cb", "grp-held", memory_mib=256)
    f.vm("cb", "grp-open", memory_mib=256)
    held = f.migrate("grp-held", "cb", "shut2")
    assert f.show(held)["state"] == "queued"  # rack9's window is closed: nothing to do yet
    opened = f.migrate("grp-open", "cb", "open1")
    assert f.ended(opened)["state"] == "completed"
    # Later migrations ran and ended, so ticks came and went: the held one is still held.
    f.vm("cb", "grp-later", memory_mib=256)
    assert f.ended(f.migrate("grp-later", "cb", "cd4"))["state"] == "completed"
    record = f.show(held)
    assert record["state"] == "queued" and record["phases"] == []
    assert f.domains("cb")["grp-held"]["state"] == "running"
    cancelled = json.loads(f.run("cancel", held, "--json").stdout)
    assert cancelled["state"] == "cancelled"


def test_a_bandwidth_budget_makes_a_migration_wait_until_it_fits(configured):
    """cb has 300 MiB/s in all: 200 + 100 fit together, a second 200 waits for the first."""
    f = configured
    for name, memory in (("bw-a", 1000), ("bw-b", 1000), ("bw-c", 250)):
        f.vm("cb", name, memory_mib=memory)
    first = f.migrate("bw-a", "cb", "cd1", "--bandwidth", "200")  # 5 s
    second = f.migrate("bw-b", "cb", "cd2", "--bandwidth", "200")
    third = f.migrate("bw-c", "cb", "cd3", "--bandwidth", "100")  # 2.5 s, beside the first
    assert f.show(second)["state"] == "waiting"
    a, b, c = (f.ended(i) for i in (first, second, third))
    assert a["state"] == b["state"] == c["state"] == "completed"
    assert overlap(a, c), "200 + 100 MiB/s fit the budget together"
    assert not overlap(a, b) and not overlap(b, c), "a second 200 MiB/s never ran beside them"


def test_ageing_lets_an_old_low_priority_migration_pass_a_newer_higher_one(configured):
    """cs's two outbound slots are busy (8 s each, long enough for the CLI calls below on a busy
    machine); 'old' (priority 0) waits 2.5 s, then 'new' (priority 2) comes. With a priority step
    every 0.5 s, 'old' is ahead when a slot frees up."""
    f = configured
    for name in ("age-busy1", "age-busy2"):
        f.vm("cs", name, memory_mib=2048)
    for name in ("age-old", "age-new"):
        f.vm("cs", name)
    busy = [f.migrate("age-busy1", "cs", "cd1"), f.migrate("age-busy2", "cs", "cd2")]
    old = f.migrate("age-old", "cs", "cd3", "--priority", "0")
    assert f.show(old)["state"] == "waiting"
    time.sleep(2.5)  # the subject: the time 'old' has waited
    new = f.migrate("age-new", "cs", "cd4", "--priority", "2")
    assert f.show(new)["state"] == "waiting"
    records = {i: f.ended(i) for i in (*busy, old, new)}
    assert all(r["state"] == "completed" for r in records.values())
    assert started(records[old]) < started(records[new])


def test_cancel_of_a_waiting_migration_ends_it_at_once(configured):
    f = configured
    for name in ("cw-busy1", "cw-busy2", "cw-wait"):
        f.vm("cs", name)
    busy = [f.migrate("cw-busy1", "cs", "cd1"), f.migrate("cw-busy2", "cs", "cd2")]
    waiting = f.migrate("cw-wait", "cs", "cd3")
    assert f.show(waiting)["state"] == "waiting"
    done = f.run("cancel", waiting, "--json")
    assert json.loads(done.stdout)["state"] == "cancelled"
    for i in busy:
        assert f.ended(i)["state"] == "completed"
    record = f.show(waiting)
    assert record["state"] == "cancelled" and record["phases"] == []
    assert record["error"]["code"] == "CANCELLED"
    assert f.domains("cs")["cw-wait"]["state"] == "running"


def test_cancel_of_a_pending_migration_that_no_dispatcher_started_yet(configured):
    """With every dispatcher stopped, an admitted migration stays pending; cancelled then, the
    dispatcher that comes back must not start it."""
    f = configured
    f.vm("cb", "pend-vm", memory_mib=256)
    f.local.stop("dispatcher")
    try:
        pending = f.migrate("pend-vm", "cb", "cd1")
        assert f.show(pending)["state"] == "pending"
        assert json.loads(f.run("cancel", pending, "--json").stdout)["state"] == "cancelled"
    finally:
        f.dispatcher_metrics = start_with_metrics(
            f.local,
            "dispatcher",
            lambda p: f.local._spawn("dispatcher", ["dispatcher", "--metrics-port", str(p)]),
        )
    # The restarted dispatcher consumed the start message: the dispatcher queue drains.
    wait_until(lambda: f.client.llen("vmigrate.dispatcher") == 0, "the start message consumed")
    f.vm("cb", "pend-next", memory_mib=256)
    assert f.ended(f.migrate("pend-next", "cb", "cd1"))["state"] == "completed"
    record = f.show(pending)
    assert record["state"] == "cancelled" and record["phases"] == []
    assert f.domains("cb")["pend-vm"]["state"] == "running"
    assert "pend-vm" not in f.domains("cd1")


def test_the_dispatcher_and_the_api_serve_their_metrics(configured):
    f = configured
    f.vm("cs", "met-busy1")
    f.vm("cs", "met-busy2")
    f.vm("cs", "met-wait", memory_mib=256)
    ids = [f.migrate(n, "cs", d) for n, d in (("met-busy1", "cd1"), ("met-busy2", "cd2"))]
    waited = f.migrate("met-wait", "cs", "cd3")  # admitted later by a dispatcher's tick
    for i in (*ids, waited):
        f.ended(i)
    text = metrics_text(f.dispatcher_metrics)
    assert re.search(r"^vmigrate_admission_wait_seconds_count [1-9]", text, re.M), text
    assert re.search(r"^vmigrate_hosts_alive\S* ", text, re.M)

    api_port = start_with_metrics(
        f.local,
        "api",
        lambda p: f.local._spawn(
            "api", ["api", "--port", str(free_port()), "--metrics-port", str(p)]
        ),
    )
    try:
        text = metrics_text(api_port)
        names = {
            line.split("{")[0].split(" ")[0]
            for line in text.splitlines()
            if line[:1] not in ("#", "")
        }
        assert names and all(n.startswith("vmigrate_") for n in names), sorted(names)
        assert "vmigrate_queue_depth" in text and "vmigrate_migrations" in text
    finally:
        f.local.stop("api")
