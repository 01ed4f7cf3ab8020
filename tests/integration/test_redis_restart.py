"""Redis killed and restarted under deploy/redis/redis.conf: nothing queued or running is lost.

Workers and dispatchers are not restarted: they reconnect by themselves, and the sweeper drives on
any migration whose in-flight message the restart lost.
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tasks.registry import read_inventory
from tasks.store import RecordStore
from tests.conftest import FAST_RECOVERY, require_redis
from tests.helpers import cli, vm_xml, wait_terminal
from tests.redis_server import launch_redis, on_free_port
from vmigrate.fleet import LocalFleet

CONF = Path(__file__).resolve().parents[2] / "deploy" / "redis" / "redis.conf"


def start_redis(port: int, directory: Path) -> subprocess.Popen[bytes]:
    args = [str(CONF), "--port", str(port), "--dir", str(directory), "--bind", "127.0.0.1"]
    return launch_redis(args, redis.Redis(port=port, socket_connect_timeout=0.5, retry_on_error=[]))


@pytest.fixture
def persistent_redis(tmp_path):
    require_redis()
    port, first = on_free_port(lambda port: start_redis(port, tmp_path))
    procs = [first]
    try:
        yield port, tmp_path, procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_queued_and_running_migrations_survive_a_redis_restart(persistent_redis, tmp_path):
    port, directory, procs = persistent_redis
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, decode_responses=True)
    store = RecordStore(client, 3600)
    home = tmp_path / "home"
    env = {"VMIGRATE_BROKER_URL": url, **FAST_RECOVERY, "VMIGRATE_CONFIG": ""}
    fleet = LocalFleet(env, home)
    try:
        fleet.start_host("ra", "--link-mibps", "256")
        fleet.start_host("rb")
        fleet.start_dispatcher()
        fleet.wait_ready(client, ["ra", "rb"])
        pids = {name: p.pid for name, p in fleet.processes.items()}
        run = [
            cli(
                env,
                home,
                "define",
                "ra",
                xml_file(tmp_path, f"vm{i}", 2048 if i == 0 else 256),
                "--start",
                timeout=60,
            )
            for i in range(4)
        ]
        assert all(r.returncode == 0 for r in run), [r.stderr for r in run]
        running = submit_cli(env, home, "vm0", [])
        later = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=12)).isoformat()
        queued = [submit_cli(env, home, f"vm{i}", ["--not-before", later]) for i in (1, 2, 3)]
        wait_for_state(store, running, "perform")
        assert {store.get(q).state for q in queued} == {"queued"}

        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        time.sleep(1.0)  # the subject: an outage the fleet rides out (not a wait for a state)
        procs.append(start_redis(port, directory))

        assert {store.get(q).state for q in queued} == {"queued"}
        assert client.hlen("vmigrate:queue") == 3
        finals = [wait_terminal(m, 90, store) for m in [running, *queued]]
        assert [f.state for f in finals] == ["completed"] * 4, [(f.state, f.error) for f in finals]
        names = {d["name"] for d in read_inventory(client, "rb") if d["state"] == "running"}
        assert names == {"vm0", "vm1", "vm2", "vm3"}
        assert {n: p.pid for n, p in fleet.processes.items()} == pids  # nobody was restarted
        assert all(p.poll() is None for p in fleet.processes.values())
        assert "keeps no append-only file" not in (home / "logs" / "ra.log").read_text()
    finally:
        fleet.stop_all()


def xml_file(tmp_path: Path, name: str, memory: int) -> str:
    path = tmp_path / f"{name}.xml"
    path.write_text(vm_xml(name, memory_mib=memory))
    return str(path)


def submit_cli(env, home, name, extra):
    result = cli(
        env, home, "migrate", name, "--from", "ra", "--to", "rb", "--live", *extra, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def wait_for_state(store, migration_id, state, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store.get(migration_id).state == state:
            return
        time.sleep(0.02)
    raise AssertionError(f"{migration_id} never reached {state}")
