"""Storage migration end to end against libvirt's ``virsh migrate --live --p2p --copy-storage-all``.

The two daemons of the libvirt benchmark (vmigrate/libvirt_bed.py), each with its own images
directory: the guest's data disk is at the same path on both, a different file on each. The guest
is the busy Linux guest with ``BENCH_STORAGE_MEMORY`` MiB of RAM (default 512, half of it filled
with random data) and a qcow2 data disk of ``BENCH_STORAGE_DISK`` MiB (default 2048) of which
``BENCH_STORAGE_WRITTEN`` MiB (default 1024) hold data, written before it boots; while it
migrates it writes a record to that disk five times a second.

virsh: ``virsh migrate --live --p2p --copy-storage-all NAME DEST-URI``, timed from the command's
start to its exit; libvirt creates the destination's image itself (a directory pool covers the
images directory on both daemons). vmigrate: ``migrate --live --copy-storage-all`` submitted as a
user would, timed from submission to the event saying it completed; its Prepare creates the
image. After each hop the image left on the old source is deleted (untimed), so that every hop
copies into a new image. The methods alternate virsh, vmigrate, vmigrate, virsh, ...
(``BENCH_STORAGE_REPEAT`` hops of each, default 5), ``PAUSE`` seconds between hops; medians.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.common import private_redis, table, wait_ready
from tests.bench.libvirt import ORDER, PAUSE, timed_migration

MEMORY = int(os.environ.get("BENCH_STORAGE_MEMORY", "512"))
DISK = int(os.environ.get("BENCH_STORAGE_DISK", "2048"))
WRITTEN = int(os.environ.get("BENCH_STORAGE_WRITTEN", "1024"))
REPEAT = int(os.environ.get("BENCH_STORAGE_REPEAT", "5"))
NAME = "bench-storage"
IMAGE = f"{NAME}.qcow2"
MIB = 2**20


def _jobinfo(text: str) -> dict[str, float]:
    """Downtime, memory and disk bytes from ``virsh domjobinfo --completed``."""
    found = {"downtime_ms": 0.0, "memory_mib": 0.0}
    keys = {"Memory processed": "memory_mib"}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if key.strip() == "Total downtime" and parts:
            found["downtime_ms"] = float(parts[0])
        if key.strip() in keys and len(parts) >= 2:
            scale = {"B": 1 / MIB, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}.get(parts[1], 1)
            found[keys[key.strip()]] = float(parts[0]) * scale
    return found


def _virsh_hop(source: Any, destination: Any) -> dict[str, float]:
    began = time.perf_counter()
    subprocess.run(
        [
            "virsh",
            "-c",
            source.uri,
            "migrate",
            "--live",
            "--p2p",
            "--copy-storage-all",
            NAME,
            destination.uri,
            f"tcp://{destination.address}",
        ],
        check=True,
        capture_output=True,
        timeout=1800,
    )
    seconds = time.perf_counter() - began
    return {"seconds": seconds, **_jobinfo(destination.virsh("domjobinfo", "--completed", NAME))}


def _vmigrate_hop(source: Any, destination: Any) -> dict[str, float]:
    seconds, final = timed_migration(NAME, source, destination, ["live", "copy_storage_all"])
    return {
        "seconds": seconds,
        "downtime_ms": float(final.progress.get("downtime_ms", 0)),
        "memory_mib": final.progress.get("memory_processed", final.progress.get("transferred", 0))
        / MIB,
    }


def _guest(home: Path, bed: Any) -> None:
    from vmigrate.guest import build_initramfs, find_kernel
    from vmigrate.libvirt_bed import IMAGES_DIR, guest_definition

    initrd = home / "daemons" / "initrd.cpio"  # inside the bed's storage roots
    build_initramfs(initrd)
    a = bed.daemons[0]
    image = a.image_file(IMAGE)
    image.parent.mkdir(parents=True, exist_ok=True)
    data = home / "random.bin"  # random, so that neither side can skip it as zeroes
    with open(data, "wb") as handle:
        for _ in range(WRITTEN):
            handle.write(os.urandom(MIB))
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(data), str(image)], check=True
    )
    subprocess.run(["qemu-img", "resize", "-q", str(image), f"{DISK}M"], check=True)
    data.unlink()
    xml = home / f"{NAME}.xml"
    definition = guest_definition(
        NAME,
        find_kernel(),
        initrd,
        memory_mib=MEMORY,
        fill_mib=MEMORY // 2,
        disk=f"{IMAGES_DIR}/{IMAGE}",
    )
    xml.write_text(definition)
    a.virsh("define", str(xml))
    a.virsh("start", NAME)
    wait_ready(a.console_file(NAME))


def _allocated_mib(daemon: Any) -> float:
    """What the copy wrote: the destination image's allocated size (libvirt's completed job
    statistics do not count the NBD mirrors' bytes)."""
    done = subprocess.run(
        ["qemu-img", "info", "--output=json", "-U", str(daemon.image_file(IMAGE))],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(json.loads(done.stdout)["actual-size"]) / MIB


def _drop_left_image(daemon: Any) -> None:
    """The image a hop left on its old source: gone, so the next hop copies into a new one."""
    daemon.image_file(IMAGE).unlink(missing_ok=True)
    daemon.virsh("pool-refresh", "bench-images", check=False)


def _hops(bed: Any) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    theirs: list[dict[str, float]] = []
    ours: list[dict[str, float]] = []
    here, there = bed.daemons
    for hop in range(2 * REPEAT):
        time.sleep(PAUSE)
        runs = theirs if ORDER[hop % len(ORDER)] == "virsh" else ours
        runs.append((_virsh_hop if runs is theirs else _vmigrate_hop)(here, there))
        runs[-1]["disk_mib"] = _allocated_mib(there)
        _drop_left_image(here)
        here, there = there, here
    return theirs, ours


def _row(label: str, runs: list[dict[str, float]]) -> list[str]:
    def median(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    return [
        label,
        f"{median('seconds'):.2f}",
        f"{median('downtime_ms'):.0f}",
        f"{median('disk_mib'):.0f}",
        f"{median('memory_mib'):.0f}",
    ]


def run() -> str:
    from vmigrate import libvirt_bed
    from vmigrate.fleet import LocalFleet

    problem = libvirt_bed.missing()
    if problem:
        raise RuntimeError(f"the storage benchmark needs {libvirt_bed.INSTALL}: {problem}")
    home = Path(tempfile.mkdtemp(prefix="vmigrate-bench-storage-"))
    with private_redis(home) as port:
        env = {"VMIGRATE_BROKER_URL": f"redis://127.0.0.1:{port}/0", "VMIGRATE_HOME": str(home)}
        os.environ.update(env)
        from tasks.runtime import runtime

        bed = libvirt_bed.make_bed(home / "daemons", ["alpha", "bravo"], first_port=26500)
        fleet = LocalFleet(env, home)
        try:
            bed.start()
            for daemon in bed.daemons:
                daemon.virsh(
                    "pool-create-as", "bench-images", "dir", "--target", libvirt_bed.IMAGES_DIR
                )
                args, extra = daemon.worker_options()
                fleet.start_host(daemon.name, *args, protocols="3", env=extra)
            fleet.start_dispatcher()
            fleet.wait_ready(runtime().redis, ["alpha", "bravo"])
            _guest(home, bed)
            theirs, ours = _hops(bed)
        finally:
            for daemon in bed.daemons:
                daemon.virsh("destroy", NAME, check=False)
                daemon.virsh("undefine", NAME, check=False)
            fleet.stop_all()
            bed.stop()
    ratio = statistics.median(r["seconds"] for r in ours) / statistics.median(
        r["seconds"] for r in theirs
    )
    headers = ["method", "seconds", "downtime (ms)", "disk sent (MiB)", "memory sent (MiB)"]
    rows = [_row("virsh --copy-storage-all", theirs), _row("vmigrate", ours)]
    title = (
        f"Storage migration, {MEMORY} MiB guest with a {DISK} MiB disk ({WRITTEN} MiB written), "
        f"TCG, median of {REPEAT} hops each, {PAUSE:.0f} s between hops; "
        f"ratio vmigrate/virsh {ratio:.2f} (target <= 1.10)"
    )
    return title + "\n" + table(rows, headers)
