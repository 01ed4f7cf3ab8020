"""Shared fixtures: a Redis database of our own and a fleet of real worker processes.

Integration tests talk to the machine's Redis (127.0.0.1:6379, database ``VMIGRATE_TEST_DB``, or
one this run leases so that two runs at once never share one), through real Celery workers started
as subprocesses, one per host. Every process is ended by its pid when the session ends, even on
failure. In CI (CI=true or CI=1) a missing Redis fails.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.environment import claim_database, missing_dependency, release_lease, renew_lease
from tests.redis_server import on_free_port

TEST_DB = int(os.environ.get("VMIGRATE_TEST_DB") or claim_database() or 11)
REDIS_URL = os.environ.get("VMIGRATE_TEST_REDIS", f"redis://127.0.0.1:6379/{TEST_DB}")
HOME = Path(tempfile.mkdtemp(prefix="vmigrate-test-"))

# A window closed now (a minute on the day after tomorrow), and one always open.
_CLOSED_DAY = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[
    (dt.datetime.now(dt.UTC).weekday() + 2) % 7
]
CLOSED_AND_ALWAYS = f"""
[windows.closed]
timezone = "UTC"
ranges = ["{_CLOSED_DAY} 12:00-12:01"]

[windows.always]
timezone = "UTC"
ranges = ["Mon-Sun 00:00-24:00"]
"""
#: The loopback receiver of webhooks (tests/webhook_receiver.py): a port of this run's own.
WEBHOOK_PORT = 23000 + 50 * (TEST_DB % 16)
WEBHOOK_SECRET = "test-webhook-secret"
WEBHOOK_ALL = "/hooks/all"  # the standing subscription: every migration of the session
CONFIG = HOME / "vmigrate.toml"
CONFIG.write_text(f"""
[limits]
outbound_per_host = 2
inbound_per_host = 2
fleet = 5
{CLOSED_AND_ALWAYS}
[windows.nights]
timezone = "Europe/Paris"
ranges = ["Mon-Fri 22:00-06:00", "Sat-Sun 00:00-24:00"]

[webhooks]
allow = ["http://127.0.0.1:{WEBHOOK_PORT}/hooks"]
subscribers = ["http://127.0.0.1:{WEBHOOK_PORT}{WEBHOOK_ALL}"]
secret = "{WEBHOOK_SECRET}"
retry_max_seconds = 1
""")

# The test process is a client of the same broker, with the same configuration, as its fleet.
os.environ["VMIGRATE_BROKER_URL"] = REDIS_URL
os.environ["VMIGRATE_HOME"] = str(HOME)
os.environ["VMIGRATE_CONFIG"] = str(CONFIG)
os.environ["VMIGRATE_API_TOKENS"] = "test-token-1,test-token-2"
# Migration ports of this run's hosts: a range of their own per leased database, below the
# ephemeral range, so two runs at once do not take each other's ports.
PORT_BASE = 24000 + 200 * (TEST_DB % 16)
os.environ["VMIGRATE_MIGRATION_PORT_MIN"] = str(PORT_BASE)
os.environ["VMIGRATE_MIGRATION_PORT_MAX"] = str(PORT_BASE + 199)

#: The integration fleet: every mix of protocol versions, two hosts of each kind.
FLEET_HOSTS = {
    "p1a": "1",
    "p1b": "1",
    "p2a": "2",
    "p2b": "2",
    "p3a": "3",
    "p3b": "3",
    "pxa": "1,2,3",
    "pxb": "1,2,3",
}
#: Sweeper deadlines short enough for crash tests to finish in seconds.
FAST_RECOVERY = {
    "VMIGRATE_HOST_TTL": "10",
    "VMIGRATE_PHASE_TIMEOUT": "4",
    "VMIGRATE_POLL_STALE_AFTER": "3",
    "VMIGRATE_HOST_DEAD_AFTER": "8",
    "VMIGRATE_SCHEDULER_INTERVAL": "0.5",
}
TWIN_UUID = "5a1e5a1e-0000-4000-8000-00000000a1a1"


def redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def require_redis() -> None:
    if redis_available():
        return
    missing_dependency(f"Redis is not reachable at {REDIS_URL}")


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    require_redis()
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    client.flushdb()
    renew_lease(client)
    yield client
    client.flushdb()
    release_lease(client)


@pytest.fixture(scope="session")
def webhook_receiver() -> Iterator[object]:
    """Receives the fleet's webhooks for the whole session (so none wait for it)."""
    from tests.webhook_receiver import Receiver

    receiver = Receiver(WEBHOOK_PORT)
    receiver.up()
    try:
        yield receiver
    finally:
        receiver.down()


@pytest.fixture(scope="session")
def fleet(redis_client: redis.Redis, webhook_receiver: object) -> Iterator[object]:
    from vmigrate.fleet import LocalFleet

    env = {"VMIGRATE_BROKER_URL": REDIS_URL, **FAST_RECOVERY}
    local = LocalFleet(env, HOME)
    try:
        for name, protocols in FLEET_HOSTS.items():
            local.start_host(name, "--memory-mib", "65536", protocols=protocols)
        # Two hosts cloned from one image, so sharing a host uuid: libvirt's same-host case.
        local.start_host("twin-a", "--host-uuid", TWIN_UUID)
        local.start_host("twin-b", "--host-uuid", TWIN_UUID)
        local.start_host("small", "--memory-mib", "1024")
        local.start_host("slow", "--link-mibps", "256")
        local.start_host("evac", "--memory-mib", "65536")
        local.start_dispatcher("dispatcher-1")
        local.start_dispatcher("dispatcher-2")
        local.wait_ready(redis_client, [*FLEET_HOSTS, "twin-a", "twin-b", "small", "slow", "evac"])
        yield local
    finally:
        local.stop_all()


def _start_api(port: int, log: Path) -> subprocess.Popen[bytes]:
    """``vmigrate api`` on ``port``, returned once it answers; ``PortLost`` if it lost the port."""
    from tests.helpers import serving

    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vmigrate.cli", "api", "--port", str(port)],
            env=os.environ.copy(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def answers() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return True
        except OSError:
            return False

    try:
        return serving(proc, answers, log, "vmigrate api")
    except AssertionError:
        proc.kill()
        proc.wait(10)
        raise


@pytest.fixture(scope="module")
def api(fleet: object) -> Iterator[str]:
    log = HOME / "logs" / "api.log"
    port, proc = on_free_port(lambda port: _start_api(port, log))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
