"""Detached QEMU processes: started with a pid file and a QMP socket, so they outlive the worker.

A QEMU that exited may stay a zombie for a while (PID 1 reaps orphans lazily), so it counts as
ended by its state in ``/proc/PID/stat`` (``Z``) or its closed QMP socket, never by its pid alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

from workers.drivers.base import DriverError
from workers.drivers.qemu import qmp
from workers.drivers.qemu.cmdline import Paths


class QemuStartFailed(DriverError):
    code = "QEMU_START_FAILED"


def run_dir_for(state_dir: Path, name: str) -> Path:
    """A directory for the QMP socket short enough for a Unix socket path (108 bytes)."""
    preferred = state_dir / "run" / name
    if len(str(preferred / "qmp.sock")) < 100:
        return preferred
    digest = hashlib.sha256(str(preferred).encode()).hexdigest()[:16]
    return Path("/tmp") / f"vmigrate-run-{digest}"  # noqa: S108 (a private, 0700 directory)


def paths_for(state_dir: Path, name: str) -> Paths:
    run = run_dir_for(state_dir, name)
    data = state_dir / "domains" / name
    for directory in (run, data):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Paths(run, data)


def read_pid(paths: Paths) -> int | None:
    try:
        return int(paths.pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, IndexError):
        return False
    return fields[0] != "Z"


def alive(paths: Paths) -> bool:
    return process_alive(read_pid(paths)) and qmp.reachable(paths.qmp)


PVM_MODULE = Path("/sys/module/kvm_pvm")


def check_kvm_usable() -> None:
    """Refuse a ``kvm`` guest, with the reason, where it could not boot."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise QemuStartFailed(
            "domain type 'kvm' needs a usable /dev/kvm, and this host has none; "
            "use domain type 'qemu' (software emulation, TCG)"
        )
    if PVM_MODULE.exists() and os.environ.get("VMIGRATE_ALLOW_PVM") != "1":
        raise QemuStartFailed(
            "this host's /dev/kvm is provided by PVM (module kvm_pvm), under which a stock Linux "
            "guest kernel does not boot; use domain type 'qemu' (TCG), or set VMIGRATE_ALLOW_PVM=1 "
            "for a guest kernel built for PVM"
        )


def start(argv: list[str], paths: Paths, accel_kvm: bool) -> int:
    """Start QEMU detached (``-daemonize``) and return its pid once its monitor answers."""
    if accel_kvm:
        check_kvm_usable()
    paths.pidfile.unlink(missing_ok=True)
    paths.qmp.unlink(missing_ok=True)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise QemuStartFailed(f"QEMU did not start: {result.stderr.strip()[-500:]}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if qmp.reachable(paths.qmp):
            pid = read_pid(paths)
            if pid:
                return pid
        time.sleep(0.05)
    raise QemuStartFailed("QEMU started but its QMP monitor never answered")


def stop(paths: Paths, timeout: float = 10.0) -> None:
    """End the QEMU of ``paths``: ask it to quit, then SIGKILL; wait until it is really gone."""
    pid = read_pid(paths)
    if not process_alive(pid):
        return
    with contextlib.suppress(qmp.QMPError):
        qmp.execute(paths.qmp, "quit", timeout=2.0)
    deadline = time.monotonic() + timeout
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if process_alive(pid):
        os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
        while process_alive(pid) and time.monotonic() < deadline + 5:
            time.sleep(0.05)
