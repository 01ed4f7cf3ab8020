"""One worker process serving several sim hosts (`vmigrate worker --host a b c`), as the fleet
benchmark runs a thousand: each host has its own queue, registration, state and inventory, and a
migration between two hosts of the same process is as real as one between two processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tasks.runtime import runtime
from tests.conftest import HOME, REDIS_URL
from tests.helpers import live_copies, migrate, running_vm
from vmigrate.fleet import LocalFleet

HOSTS = ["many-a", "many-b", "many-c"]


@pytest.fixture(scope="module")
def shared_worker(fleet):
    local = LocalFleet({"VMIGRATE_BROKER_URL": REDIS_URL}, HOME)
    try:
        proc = local.start_hosts(HOSTS)
        local.wait_ready(runtime().redis, HOSTS)
        yield proc
    finally:
        local.stop_all()


def test_every_host_of_the_process_registers_with_its_own_identity(shared_worker):
    from tasks.registry import get_hosts

    infos = get_hosts(runtime().redis, HOSTS)
    assert all(i is not None and i.alive and i.driver == "sim" for i in infos)
    assert len({i.host_uuid for i in infos if i is not None}) == len(HOSTS)


def test_migrations_between_hosts_of_one_process_and_out_of_it(shared_worker):
    vm = running_vm("many-a")
    for source, destination in [
        ("many-a", "many-b"),
        ("many-b", "many-c"),
        ("many-c", "pxa"),  # to a host in another process
        ("pxa", "many-a"),
    ]:
        final = migrate(vm["name"], source, destination, flags=["live"])
        assert final.state == "completed", final.error
        assert final.protocol == 3
        assert live_copies(vm["uuid"]) == [(destination, vm["name"], "running")]
    assert shared_worker.poll() is None  # still the one process serving all three


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "dup-a", "dup-a"], "named twice"),
        (["--host", "q-a", "q-b", "--driver", "qemu"], "only with the sim driver"),
        (["--host", "u-a", "u-b", "--host-uuid", "5b1f0a43-4d5c-4b7e-9d55-0c3c5b4a9f01"], "uuid"),
        (["--host", "ok-a", "bad name"], "host name"),
    ],
)
def test_a_worker_refuses_host_lists_it_cannot_serve(fleet, args, message):
    result = subprocess.run(
        [sys.executable, "-m", "vmigrate.cli", "worker", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "VMIGRATE_BROKER_URL": REDIS_URL},
    )
    assert result.returncode != 0
    assert message in result.stderr
