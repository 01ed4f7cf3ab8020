"""The libvirt driver end to end against libvirt's own ``virsh migrate --live --p2p``.

Two libvirt daemons act as two hosts (vmigrate/libvirt_bed.py), a vmigrate worker beside each,
a dispatcher and a private Redis. The guest is the busy Linux guest of the QEMU tests (half its
RAM filled with random data; dirtying: rewriting ``DIRTY_MIB`` MiB about every second), under TCG,
in each size of ``BENCH_LIBVIRT_SIZES`` (MiB, default ``256,1024``), idle and dirtying.

virsh: ``virsh migrate --live --p2p NAME DEST-URI tcp://ADDRESS:PORT``, timed by the benchmark
from the command's start to its exit (libvirt has then confirmed: the source has ended).

vmigrate: ``migrate --live`` submitted as a user would, timed from submission to the event saying
it completed (Finish and Confirm done).

Each hop goes to the other daemon, the methods in the order virsh, vmigrate, vmigrate, virsh, ...
(so each takes both directions equally often), ``BENCH_LIBVIRT_REPEAT`` hops of each (default 4),
with ``PAUSE`` seconds between hops so that each lands on memory the destination has not just
released; medians are reported. Each cell's guest is destroyed and
undefined on both daemons before the next cell's boots.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.common import (
    comparison_headers,
    comparison_row,
    private_redis,
    table,
    wait_ready,
)

SIZES = [int(s) for s in os.environ.get("BENCH_LIBVIRT_SIZES", "256,1024").split(",")]
REPEAT = int(os.environ.get("BENCH_LIBVIRT_REPEAT", "4"))
ORDER = ("virsh", "vmigrate", "vmigrate", "virsh")  # each method both ways, equally often
PAUSE = float(os.environ.get("BENCH_LIBVIRT_PAUSE", "5"))
DIRTY_MIB = 20
MIB = 2**20


def _virsh_hop(name: str, source: Any, destination: Any) -> dict[str, float]:
    from workers.drivers.shared.ports import probe_free_port

    port = probe_free_port(destination.address, destination.ports, set())
    uri = f"tcp://{destination.address}:{port}"
    began = time.perf_counter()
    subprocess.run(
        ["virsh", "-c", source.uri, "migrate", "--live", "--p2p", name, destination.uri, uri],
        check=True,
        capture_output=True,
        timeout=900,
    )
    seconds = time.perf_counter() - began
    info = destination.virsh("domjobinfo", "--completed", name)
    return {"seconds": seconds, **_jobinfo(info)}


def _jobinfo(text: str) -> dict[str, float]:
    """Downtime and bytes from ``virsh domjobinfo --completed``."""
    found: dict[str, float] = {"downtime_ms": 0.0, "mib": 0.0}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if key.strip() == "Total downtime" and parts:
            found["downtime_ms"] = float(parts[0])
        if key.strip() == "Data processed" and len(parts) >= 2:
            scale = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}.get(parts[1], 1 / MIB)
            found["mib"] = float(parts[0]) * scale
    return found


def timed_migration(name: str, source: Any, destination: Any, flags: list[str]) -> Any:
    """Submit ``name``'s migration as a user would, once the source's inventory lists it running
    (it follows a virsh hop with the next heartbeat); (seconds to the completed event, record)."""
    import redis

    from tasks.registry import read_inventory
    from tasks.runtime import runtime
    from tasks.submission import MigrationRequest, submit
    from tests.bench.overhead import _last_event, _wait_event

    rt = runtime()
    deadline = time.monotonic() + 30
    while not any(
        d["name"] == name and d["state"] == "running"
        for d in read_inventory(rt.redis, source.name) or []
    ):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} not in {source.name}'s inventory")
        time.sleep(0.1)
    events = redis.Redis.from_url(os.environ["VMIGRATE_BROKER_URL"])
    after = _last_event(events)
    began = time.perf_counter()
    record = submit(MigrationRequest(name, source.name, destination.name, flags=flags))
    state = _wait_event(events, record.id, after, timeout=1800)
    seconds = time.perf_counter() - began
    final = rt.store.get(record.id)
    if state != b"completed" or final is None:
        raise RuntimeError(f"vmigrate migration {record.id} ended {state!r}: {final}")
    return seconds, final


def _vmigrate_hop(name: str, source: Any, destination: Any) -> dict[str, float]:
    seconds, final = timed_migration(name, source, destination, ["live"])
    return {
        "seconds": seconds,
        "downtime_ms": float(final.progress.get("downtime_ms", 0)),
        "mib": final.progress.get("transferred", 0) / MIB,
    }


def _cell(home: Path, bed: Any, memory: int, dirty: int) -> tuple[list[dict[str, float]], ...]:
    from vmigrate.guest import build_initramfs, find_kernel
    from vmigrate.libvirt_bed import guest_definition

    initrd = home / "daemons" / "initrd.cpio"  # inside the bed's storage roots
    if not initrd.exists():
        build_initramfs(initrd)
    name = f"bench-{memory}-{dirty}"
    xml = home / f"{name}.xml"
    xml.write_text(
        guest_definition(
            name, find_kernel(), initrd, memory_mib=memory, fill_mib=memory // 2, dirty_mib=dirty
        )
    )
    a, b = bed.daemons
    a.virsh("define", str(xml))
    a.virsh("start", name)
    virsh_runs: list[dict[str, float]] = []
    ours: list[dict[str, float]] = []
    try:
        wait_ready(a.console_file(name))
        here, there = a, b
        for hop in range(2 * REPEAT):
            time.sleep(PAUSE)
            if ORDER[hop % len(ORDER)] == "virsh":
                virsh_runs.append(_virsh_hop(name, here, there))
            else:
                ours.append(_vmigrate_hop(name, here, there))
            here, there = there, here
    finally:
        for daemon in bed.daemons:
            daemon.virsh("destroy", name, check=False)
            daemon.virsh("undefine", name, check=False)
    return virsh_runs, ours


def run() -> str:
    from vmigrate import libvirt_bed
    from vmigrate.fleet import LocalFleet

    problem = libvirt_bed.missing()
    if problem:
        raise RuntimeError(f"the libvirt benchmark needs {libvirt_bed.INSTALL}: {problem}")
    home = Path(tempfile.mkdtemp(prefix="vmigrate-bench-libvirt-"))
    rows = []
    with private_redis(home) as port:
        env = {"VMIGRATE_BROKER_URL": f"redis://127.0.0.1:{port}/0", "VMIGRATE_HOME": str(home)}
        os.environ.update(env)
        from tasks.runtime import runtime

        bed = libvirt_bed.make_bed(home / "daemons", ["alpha", "bravo"], first_port=26000)
        fleet = LocalFleet(env, home)
        try:
            bed.start()
            for daemon in bed.daemons:
                args, extra = daemon.worker_options()
                fleet.start_host(daemon.name, *args, protocols="3", env=extra)
            fleet.start_dispatcher()
            fleet.wait_ready(runtime().redis, ["alpha", "bravo"])
            for memory in SIZES:
                for load, dirty in (("idle", 0), ("dirtying", DIRTY_MIB)):
                    virsh_runs, ours = _cell(home, bed, memory, dirty)
                    rows.append(comparison_row(f"{memory} MiB {load}", virsh_runs, ours))
        finally:
            fleet.stop_all()
            bed.stop()
    headers = comparison_headers("virsh")
    title = (
        f"libvirt peer-to-peer migrations under TCG, median of {REPEAT} hops each, {PAUSE:.0f} s "
        "between hops; target: ratio <= 1.05 for the 1 GiB guest"
    )
    return title + "\n" + table(rows, headers)
