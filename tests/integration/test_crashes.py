"""SIGKILL at every phase boundary and mid-Perform, for v2 and v3: no VM lost, none doubled.

A host started with VMIGRATE_TEST_CRASH kills itself with SIGKILL at that exact point; the test then
restarts it (same state directory) and the migration must end by itself, within a bounded time,
with the VM live on exactly one host, the one the record names. Hosts that stay dead get their
migrations failed with HOST_DOWN and rolled back, never a VM started twice.
"""

from __future__ import annotations

import signal

import pytest

from tasks.runtime import runtime
from tasks.submission import MigrationRequest, submit
from tests.conftest import FAST_RECOVERY, HOME, REDIS_URL
from tests.helpers import live_copies, running_vm, wait_terminal, wait_until
from vmigrate.fleet import LocalFleet

PAIRS = {3: ("c3src", "c3dst", "3"), 2: ("c2src", "c2dst", "2")}
SOURCE_PHASES = {"begin", "dumpxml", "perform", "confirm", "poll"}
POINTS = {
    3: [
        "begin:before",
        "begin:after",
        "prepare:before",
        "prepare:after",
        "perform:before",
        "perform:after",
        "poll",
        "finish:before",
        "finish:after",
        "confirm:before",
        "confirm:after",
    ],
    2: [
        "dumpxml:before",
        "dumpxml:after",
        "prepare:before",
        "prepare:after",
        "perform:before",
        "perform:after",
        "poll",
        "finish:before",
        "finish:after",
    ],
}
CASES = [(v, p) for v in (3, 2) for p in POINTS[v]]
BOUND = 60.0  # seconds in which a crashed migration must end by itself


@pytest.fixture(scope="module")
def crash_fleet(fleet):
    local = LocalFleet({"VMIGRATE_BROKER_URL": REDIS_URL, **FAST_RECOVERY}, HOME)
    try:
        for src, dst, protocols in PAIRS.values():
            for host in (src, dst):
                local.start_host(host, "--link-mibps", "512", protocols=protocols)
        local.wait_ready(runtime().redis, [h for pair in PAIRS.values() for h in pair[:2]])
        yield local
    finally:
        local.stop_all()


def restart(local, host, protocols, crash=None, wait=True):
    local.stop(host, signal.SIGKILL)
    extra = {"VMIGRATE_TEST_CRASH": crash} if crash else {}
    local.env.update(extra)
    try:
        local.start_host(host, "--link-mibps", "512", protocols=protocols)
    finally:
        for key in extra:
            local.env.pop(key)
    if wait:
        runtime().redis.delete(f"vmigrate:host:{host}:alive")
        local.wait_ready(runtime().redis, [host])


def wait_dead(local, host, timeout=30.0):
    proc = local.processes[host]
    proc.wait(timeout)
    assert proc.returncode == -signal.SIGKILL, f"{host} exited with {proc.returncode}"


@pytest.mark.parametrize(("version", "point"), CASES, ids=[f"v{v}-{p}" for v, p in CASES])
def test_sigkill_then_restart_completes(crash_fleet, version, point):
    src, dst, protocols = PAIRS[version]
    victim = src if point.split(":")[0] in SOURCE_PHASES else dst
    vm = running_vm(src, memory_mib=512)  # one second on the 512 MiB/s link
    restart(crash_fleet, victim, protocols, crash=point)

    record = submit(MigrationRequest(vm["name"], src, dst, flags=["live"]))
    wait_dead(crash_fleet, victim)
    restart(crash_fleet, victim, protocols)
    final = wait_terminal(record.id, timeout=BOUND)

    assert final.state == "completed", (final.error, final.warnings)
    assert final.protocol == version
    assert live_copies(vm["uuid"]) == [(dst, vm["name"], "running")]


@pytest.mark.parametrize("version", [3, 2])
def test_destination_killed_mid_perform_and_restarted(crash_fleet, version):
    src, dst, protocols = PAIRS[version]
    vm = running_vm(src, memory_mib=2048)  # four seconds of transfer
    record = submit(MigrationRequest(vm["name"], src, dst, flags=["live"]))

    def copying():
        current = runtime().store.get(record.id)
        return current.state == "perform" and 0 < current.progress.get("percent", 0) < 100

    wait_until(copying, "Perform seen copying before the kill")  # else the test tests nothing
    crash_fleet.stop(dst, signal.SIGKILL)
    restart(crash_fleet, dst, protocols)
    final = wait_terminal(record.id, timeout=BOUND)
    assert final.state == "completed", final.error
    assert live_copies(vm["uuid"]) == [(dst, vm["name"], "running")]


def test_dispatcher_killed_after_accepting_a_start(crash_fleet, fleet):
    src, dst, _ = PAIRS[3]
    vm = running_vm(src)
    for name in ("dispatcher-1", "dispatcher-2"):
        fleet.stop(name)
    fleet.env["VMIGRATE_TEST_CRASH"] = "start:after-cas"
    try:
        fleet.start_dispatcher("dispatcher-doomed")
    finally:
        fleet.env.pop("VMIGRATE_TEST_CRASH")
    try:
        record = submit(MigrationRequest(vm["name"], src, dst, flags=["live"]))
        fleet.processes["dispatcher-doomed"].wait(30)
        assert runtime().store.get(record.id).step.status == "sent"  # accepted, never published
    finally:
        fleet.stop("dispatcher-doomed")
        fleet.start_dispatcher("dispatcher-1")
        fleet.start_dispatcher("dispatcher-2")
    final = wait_terminal(record.id, timeout=BOUND)
    assert final.state == "completed"
    assert live_copies(vm["uuid"]) == [(dst, vm["name"], "running")]


def test_destination_that_stays_dead_fails_the_migration_and_the_source_keeps_the_vm(crash_fleet):
    src, dst, protocols = PAIRS[3]
    vm = running_vm(src)
    restart(crash_fleet, dst, protocols, crash="prepare:before")
    record = submit(MigrationRequest(vm["name"], src, dst, flags=["live"]))
    wait_dead(crash_fleet, dst)
    try:
        final = wait_terminal(record.id, timeout=BOUND)
        assert final.state == "failed" and final.error["code"] == "HOST_DOWN"
        assert dst in final.error["message"]
        assert live_copies(vm["uuid"]) == [(src, vm["name"], "running")]
    finally:
        restart(crash_fleet, dst, protocols)
    assert live_copies(vm["uuid"]) == [(src, vm["name"], "running")]


def test_source_that_stays_dead_mid_perform_never_starts_the_vm_twice(crash_fleet):
    src, dst, protocols = PAIRS[3]
    vm = running_vm(src, memory_mib=2048)
    restart(crash_fleet, src, protocols, crash="poll")
    record = submit(MigrationRequest(vm["name"], src, dst, flags=["live"]))
    wait_dead(crash_fleet, src)
    try:
        final = wait_terminal(record.id, timeout=BOUND)
        assert final.state == "failed" and final.error["code"] == "HOST_DOWN"
        assert final.vm_host == src
        assert all(host != dst for host, _, _ in live_copies(vm["uuid"]))
    finally:
        restart(crash_fleet, src, protocols)
    # Back again, the source reconciles: its paused-or-running copy is the only one.
    assert live_copies(vm["uuid"]) == [(src, vm["name"], "running")]
