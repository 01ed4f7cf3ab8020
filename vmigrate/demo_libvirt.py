"""``vmigrate demo --driver libvirt``: a guest defined with virsh on one libvirt daemon, migrated
live to another and back by vmigrate, on two daemons acting as two hosts (vmigrate/libvirt_bed.py).

Needs root, libvirt's daemon and client, libvirt-python, QEMU, a kernel and busybox; says what to
install and stops when one is missing. Every process it starts is stopped at the end.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

HEARTBEAT = re.compile(r"HB (\S+) (\d+)")
INSTALL_GUEST = "apt-get install linux-image-cloud-amd64 busybox-static"


def _missing() -> str | None:
    from vmigrate import libvirt_bed  # noqa: PLC0415
    from vmigrate.guest import GuestUnavailable, find_kernel  # noqa: PLC0415

    problem = libvirt_bed.missing()
    if problem:
        return f"{problem}. Install what the libvirt driver needs with:\n    {libvirt_bed.INSTALL}"
    try:
        find_kernel()
    except GuestUnavailable as exc:
        return f"{exc}. Install the guest's parts with:\n    {INSTALL_GUEST}"
    return None


def run_libvirt_demo() -> int:
    problem = _missing()
    if problem:
        print(f"vmigrate demo --driver libvirt: {problem}")
        return 2
    from broker.embedded import ensure_embedded, stop_embedded  # noqa: PLC0415
    from vmigrate.libvirt_bed import make_bed  # noqa: PLC0415

    home = Path(tempfile.mkdtemp(prefix="vmigrate-libvirt-demo-"))
    url = ensure_embedded(home / "embedded")
    os.environ.update(VMIGRATE_BROKER_URL=url, VMIGRATE_HOME=str(home))
    from tasks.runtime import runtime  # noqa: PLC0415
    from vmigrate.fleet import LocalFleet  # noqa: PLC0415

    bed = make_bed(home / "daemons", ["alpha", "bravo"])
    fleet = LocalFleet({"VMIGRATE_BROKER_URL": url}, home)
    try:
        print("starting two libvirt daemons as hosts alpha (127.0.0.2) and bravo (127.0.0.3)...")
        bed.start()
        for daemon in bed.daemons:
            args, env = daemon.worker_options()
            fleet.start_host(daemon.name, *args, protocols="3", env=env)
        fleet.start_dispatcher()
        fleet.wait_ready(runtime().redis, ["alpha", "bravo"])
        return _scenario(home, bed)
    finally:
        fleet.stop_all()
        bed.stop()
        stop_embedded(home / "embedded")
        print(f"all processes and guests stopped; logs and state in {home}")


def _heartbeats(path: Path) -> list[tuple[str, int]]:
    text = path.read_text(errors="replace") if path.exists() else ""
    return [(b, int(n)) for b, n in HEARTBEAT.findall(text)]


def _scenario(home: Path, bed: object) -> int:
    from vmigrate.guest import build_initramfs, find_kernel  # noqa: PLC0415
    from vmigrate.libvirt_bed import Bed, guest_definition  # noqa: PLC0415

    assert isinstance(bed, Bed)
    alpha, bravo = bed.daemons
    name = "demo-guest"
    xml = home / f"{name}.xml"
    initrd = build_initramfs(home / "daemons" / "initrd.cpio")  # inside the storage roots
    xml.write_text(guest_definition(name, find_kernel(), initrd, fill_mib=64, dirty_mib=2))
    alpha.virsh("define", str(xml))
    alpha.virsh("start", name)
    print(f"virsh define + start {name} on alpha (not through vmigrate); booting (TCG)...")
    deadline = time.monotonic() + 120
    while len(_heartbeats(alpha.console_file(name))) < 3:
        if time.monotonic() > deadline:
            print("the guest did not boot within 120 s")
            return 1
        time.sleep(0.5)
    time.sleep(3)  # the workers' inventories take it in with their next heartbeat
    print("vmigrate migrate --live, alpha -> bravo:")
    _migrate(bed, name, alpha, bravo, None)
    print("and back, capped at 32 MiB/s:")
    _migrate(bed, name, bravo, alpha, 32)
    for daemon in bed.daemons:
        rows = daemon.virsh("list", "--all").splitlines()[2:]
        print(f"  virsh list --all on {daemon.name}: {' | '.join(r.strip() for r in rows if r)}")
    return 0


def _migrate(bed: object, name: str, source: object, destination: object, cap: int | None) -> None:
    from tasks.runtime import runtime  # noqa: PLC0415
    from tasks.submission import MigrationRequest, submit  # noqa: PLC0415
    from vmigrate.follow import wait_for  # noqa: PLC0415
    from vmigrate.libvirt_bed import Daemon  # noqa: PLC0415

    assert isinstance(source, Daemon) and isinstance(destination, Daemon)
    started = time.monotonic()
    request = MigrationRequest(name, source.name, destination.name, flags=["live"], bandwidth=cap)
    final = wait_for(runtime(), submit(request).id, progress=True)
    seconds = time.monotonic() - started
    before = _heartbeats(source.console_file(name))[-1]
    deadline = time.monotonic() + 20  # the guest's first beats there (slow on a busy machine)
    while True:
        after = [hb for hb in _heartbeats(destination.console_file(name)) if hb[1] > before[1]]
        if after or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    print(
        f"  {source.name} -> {destination.name}: {final.state}, protocol v{final.protocol}, "
        f"{seconds:.1f} s, downtime {final.progress.get('downtime_ms', 0):.0f} ms, "
        f"{final.progress.get('transferred', 0) / 2**20:.0f} MiB sent"
    )
    print(
        f"  console: last heartbeat on {source.name} {before}; first on {destination.name} "
        f"{after[0] if after else None} (same boot id, counter goes on)"
    )
