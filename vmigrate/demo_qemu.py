"""``vmigrate demo --driver qemu``: a real Linux guest migrated back and forth between two hosts.

Needs qemu-system-x86_64, a kernel in /boot and busybox (``apt-get install qemu-system-x86
linux-image-cloud-amd64 busybox-static``); says so and stops when one is missing. Domain type
``qemu`` (TCG), which runs anywhere; ``kvm`` needs a /dev/kvm that boots stock kernels. The
library is imported only once the environment points at the demo's own broker.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path

HEARTBEAT = re.compile(r"HB (\S+) (\d+)")
INSTALL = "apt-get install qemu-system-x86 linux-image-cloud-amd64 busybox-static"


def _missing() -> str | None:
    from vmigrate.guest import GuestUnavailable, find_kernel  # noqa: PLC0415

    if not shutil.which("qemu-system-x86_64"):
        return "qemu-system-x86_64 is not installed"
    if not shutil.which("busybox"):
        return "busybox is not installed"
    try:
        find_kernel()
    except GuestUnavailable:
        return "no kernel in /boot"
    return None


def _heartbeats(home: Path, host: str, name: str) -> list[tuple[str, int]]:
    path = home / "hosts" / host / "domains" / name / "console.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    return [(b, int(n)) for b, n in HEARTBEAT.findall(text)]


def _kill_guests(home: Path) -> None:
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(home) in (proc / "cmdline").read_text(errors="replace"):
                os.kill(int(proc.name), signal.SIGKILL)
        except OSError:
            continue


def run_qemu_demo() -> int:
    problem = _missing()
    if problem:
        print(f"vmigrate demo --driver qemu: {problem}. Install it with:\n    {INSTALL}")
        return 2
    from broker.embedded import ensure_embedded, stop_embedded  # noqa: PLC0415

    home = Path(tempfile.mkdtemp(prefix="vmigrate-qemu-demo-"))
    url = ensure_embedded(home / "embedded")
    os.environ.update(VMIGRATE_BROKER_URL=url, VMIGRATE_HOME=str(home))
    from tasks.runtime import runtime  # noqa: PLC0415
    from vmigrate.fleet import LocalFleet  # noqa: PLC0415

    roots = f"/boot:{home}"  # the kernel and the guest's initramfs
    fleet = LocalFleet({"VMIGRATE_BROKER_URL": url, "VMIGRATE_STORAGE_ROOTS": roots}, home)
    try:
        for host in ("alpha", "bravo"):
            fleet.start_host(host, "--driver", "qemu", "--memory-mib", "4096", protocols="2,3")
        fleet.start_dispatcher()
        fleet.wait_ready(runtime().redis, ["alpha", "bravo"])
        return _scenario(home)
    finally:
        fleet.stop_all()
        _kill_guests(home)
        stop_embedded(home / "embedded")
        print(f"all processes and guests stopped; logs and state in {home}")


def _migrate(
    home: Path, name: str, source: str, destination: str, bandwidth: int | None = None
) -> None:
    from tasks.runtime import runtime  # noqa: PLC0415
    from tasks.submission import MigrationRequest, submit  # noqa: PLC0415
    from vmigrate.follow import wait_for  # noqa: PLC0415

    already = len(_heartbeats(home, destination, name))  # lines from an earlier stay there
    started = time.monotonic()
    request = MigrationRequest(name, source, destination, flags=["live"], bandwidth=bandwidth)
    final = wait_for(runtime(), submit(request).id, progress=True)
    seconds = time.monotonic() - started
    time.sleep(1.5)
    before = _heartbeats(home, source, name)[-1]
    after = _heartbeats(home, destination, name)[already:]
    print(
        f"  {source} -> {destination}: {final.state}, protocol v{final.protocol}, {seconds:.1f} s, "
        f"downtime {final.progress.get('downtime_ms', 0):.0f} ms, "
        f"{final.progress.get('transferred', 0) / 2**20:.0f} MiB sent"
    )
    print(
        f"  console: last heartbeat on {source} {before}; first on {destination} "
        f"{after[0] if after else None} (same boot id, counter goes on)"
    )


def _scenario(home: Path) -> int:
    from tasks.host_commands import call_host  # noqa: PLC0415
    from vmigrate.guest import build_initramfs, find_kernel, guest_xml  # noqa: PLC0415

    initrd = build_initramfs(home / "initrd.cpio")
    xml = guest_xml("demo-guest", find_kernel(), initrd, memory_mib=256, fill_mib=64, dirty_mib=2)
    call_host("alpha", "define", {"xml": xml})
    call_host("alpha", "start", {"name": "demo-guest"})
    print("booting a Linux guest on alpha (TCG)...")
    deadline = time.monotonic() + 120
    while len(_heartbeats(home, "alpha", "demo-guest")) < 3:
        if time.monotonic() > deadline:
            print("the guest did not boot within 120 s")
            return 1
        time.sleep(0.5)
    print("migrating, live:")
    _migrate(home, "demo-guest", "alpha", "bravo")
    print("and back, capped at 32 MiB/s:")
    _migrate(home, "demo-guest", "bravo", "alpha", bandwidth=32)
    return 0
