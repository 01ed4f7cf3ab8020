"""Real migrations: vmigrate end to end against two bare QEMU processes migrated over QMP directly.

The guest is the busy Linux guest of the QEMU driver's tests (a distribution kernel, a busybox
initramfs that fills half its RAM with random data and, when dirtying, rewrites ``dirty`` MiB about
every second), under TCG (domain type ``qemu``), in each size of ``BENCH_QEMU_SIZES`` (MiB, default
``256,1024``), idle and dirtying.

raw: the benchmark starts the destination QEMU itself with the same command line the driver builds
(``-incoming defer``), sends ``migrate-incoming``, sets the same capabilities and parameters on the
source, sends ``migrate``, polls ``query-migrate`` every 10 ms, resumes the destination (``cont``)
and ends the source: the same work as Prepare, Perform, Finish and Confirm, with no orchestrator.

vmigrate: two host workers with the QEMU driver, a dispatcher and Redis; a v3 migration submitted
as a user would, timed from submission to the event saying it completed (the source has ended).

Each is repeated ``BENCH_QEMU_REPEAT`` times (default 3), back and forth; medians are reported.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path

from tests.bench.common import (
    comparison_headers,
    comparison_row,
    private_redis,
    table,
    wait_ready,
)

SIZES = [int(s) for s in os.environ.get("BENCH_QEMU_SIZES", "256,1024").split(",")]
REPEAT = int(os.environ.get("BENCH_QEMU_REPEAT", "3"))
DIRTY_MIB = 32
MIB = 2**20


def _guest(home: Path, name: str, memory: int, dirty: int) -> str:
    from vmigrate.guest import build_initramfs, find_kernel, guest_xml

    initrd = home / "initrd.cpio"
    if not initrd.exists():
        build_initramfs(initrd)
    return guest_xml(
        name, find_kernel(), initrd, memory_mib=memory, fill_mib=memory // 2, dirty_mib=dirty
    )


# raw ---------------------------------------------------------------------------------------------
def _raw_once(xml: str, source, destination, port: int) -> dict[str, float]:
    from workers.drivers.qemu import cmdline, process, qmp

    began = time.perf_counter()
    process.start(cmdline.build_command(xml, destination, incoming=True), destination, False)
    uri = f"tcp:127.0.0.1:{port}"
    qmp.execute(destination.qmp, "migrate-incoming", {"uri": uri})
    caps = [
        {"capability": "auto-converge", "state": False},
        {"capability": "postcopy-ram", "state": False},
    ]
    qmp.execute(source.qmp, "migrate-set-capabilities", {"capabilities": caps})
    qmp.execute(
        source.qmp, "migrate-set-parameters", {"max-bandwidth": 10 * 2**30, "downtime-limit": 300}
    )
    qmp.execute(source.qmp, "migrate", {"uri": uri})
    while (info := qmp.execute(source.qmp, "query-migrate"))["status"] != "completed":
        if info["status"] in ("failed", "cancelled"):
            raise RuntimeError(f"raw migration {info['status']}: {info}")
        time.sleep(0.01)
    qmp.execute(destination.qmp, "cont")
    process.stop(source)
    return {
        "seconds": time.perf_counter() - began,
        "downtime_ms": float(info.get("downtime", 0)),
        "mib": info.get("ram", {}).get("transferred", 0) / MIB,
    }


def _raw(home: Path, memory: int, dirty: int) -> list[dict[str, float]]:
    from tests.redis_server import free_port
    from workers.drivers.qemu import cmdline, process, qmp

    name = f"raw-{memory}-{dirty}"
    xml = _guest(home, name, memory, dirty).replace(
        "</name>", f"</name>\n  <uuid>{uuid.uuid4()}</uuid>", 1
    )  # what the driver's define adds
    sides = [process.paths_for(home / "raw" / side, name) for side in ("a", "b")]
    process.start(cmdline.build_command(xml, sides[0]), sides[0], False)
    qmp.execute(sides[0].qmp, "cont")  # QEMU starts paused (-S), as the driver starts it
    try:
        wait_ready(sides[0].state_dir / "console.log")
        runs = []
        for i in range(REPEAT):
            source, destination = sides[i % 2], sides[(i + 1) % 2]
            runs.append(_raw_once(xml, source, destination, free_port()))
            time.sleep(1)
        return runs
    finally:
        for side in sides:
            process.stop(side)


# vmigrate ----------------------------------------------------------------------------------------
def _vmigrate(home: Path, memory: int, dirty: int) -> list[dict[str, float]]:
    import redis

    from tasks.host_commands import call_host
    from tasks.runtime import runtime
    from tasks.submission import MigrationRequest, submit
    from tests.bench.overhead import _last_event, _wait_event

    name = f"vm-{memory}-{dirty}"
    call_host("alpha", "define", {"xml": _guest(home, name, memory, dirty)})
    call_host("alpha", "start", {"name": name})
    wait_ready(home / "hosts" / "alpha" / "domains" / name / "console.log")
    rt, runs, hosts = runtime(), [], ("alpha", "bravo")
    events = redis.Redis.from_url(os.environ["VMIGRATE_BROKER_URL"])  # bytes, as overhead's
    for i in range(REPEAT):
        source, destination = hosts[i % 2], hosts[(i + 1) % 2]
        after = _last_event(events)
        began = time.perf_counter()
        record = submit(MigrationRequest(name, source, destination, flags=["live"]))
        state = _wait_event(events, record.id, after, timeout=600)
        seconds = time.perf_counter() - began
        final = rt.store.get(record.id)
        if state != b"completed" or final is None:
            raise RuntimeError(f"vmigrate migration {record.id} ended {state!r}")
        runs.append(
            {
                "seconds": seconds,
                "downtime_ms": float(final.progress.get("downtime_ms", 0)),
                "mib": final.progress.get("transferred", 0) / MIB,
            }
        )
        time.sleep(1)
    return runs


def run() -> str:
    from vmigrate.demo_qemu import _kill_guests, _missing
    from vmigrate.fleet import LocalFleet

    problem = _missing()
    if problem:
        raise RuntimeError(f"the QEMU benchmark needs QEMU, a kernel and busybox: {problem}")
    home = Path(tempfile.mkdtemp(prefix="vmigrate-bench-qemu-"))
    rows = []
    with private_redis(home) as port:
        env = {"VMIGRATE_BROKER_URL": f"redis://127.0.0.1:{port}/0", "VMIGRATE_HOME": str(home)}
        os.environ.update(env)
        from tasks.runtime import runtime

        fleet = LocalFleet({**env, "VMIGRATE_STORAGE_ROOTS": f"/boot:{home}"}, home)
        try:
            for host in ("alpha", "bravo"):
                fleet.start_host(host, "--driver", "qemu", "--memory-mib", "8192", protocols="2,3")
            fleet.start_dispatcher()
            fleet.wait_ready(runtime().redis, ["alpha", "bravo"])
            for memory in SIZES:
                for load, dirty in (("idle", 0), ("dirtying", DIRTY_MIB)):
                    raw = _raw(home, memory, dirty)
                    ours = _vmigrate(home, memory, dirty)
                    rows.append(comparison_row(f"{memory} MiB {load}", raw, ours))
        finally:
            fleet.stop_all()
            _kill_guests(home)
    headers = comparison_headers("raw")
    title = (
        f"real migrations under TCG, median of {REPEAT}; target: ratio <= 1.1 for the 1 GiB guest"
    )
    return title + "\n" + table(rows, headers)
