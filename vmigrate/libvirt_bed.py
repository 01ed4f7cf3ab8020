"""Two (or more) libvirt daemons acting as separate hosts on one machine, for tests and the demo.

Each daemon runs in its own mount and UTS namespaces (``unshare``), with private bind mounts over
libvirt's configuration, socket, state, cache and log directories, its own dotted hostname, host
UUID, loopback address (127.0.0.2, 127.0.0.3, ...) and migration port range. It runs under a small
child subreaper (``python -m vmigrate.reaper``) that reaps the QEMUs it starts at once: PID 1 on
these machines reaps only every ~2 s, and libvirt waits for the source QEMU to vanish. Needs root,
``libvirtd`` and ``unshare``. docs/libvirt-driver.md tells the details.

Every process the bed starts is ended by its pid in ``stop()``: the reapers and their children
(libvirtd and every QEMU it started).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: libvirt's directories that each daemon gets its own copy of.
PRIVATE = {
    "etc": "/etc/libvirt",
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "cache": "/var/cache/libvirt",
    "log": "/var/log/libvirt",
    "images": "/var/lib/vmigrate/images",
}
#: Where a bed's guests keep their disks: the same path on every daemon, a different directory
#: on each (local disks, as on hosts without shared storage).
IMAGES_DIR = "/var/lib/vmigrate/images"
#: Where each daemon's QEMU writes a guest's serial console: the same path on every daemon, a
#: different file on each (it lies in the daemon's private /var/lib/libvirt).
CONSOLE_DIR = "/var/lib/libvirt/consoles"
INSTALL = (
    "apt-get install libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients "
    "libvirt-dev pkg-config qemu-system-x86 && pip install 'vmigrate[libvirt]'"
)
QEMU_USER = "libvirt-qemu"  # the qemu driver resolves it at start-up even with user = "root"


def guest_definition(name: str, kernel: Path, initrd: Path, **options: Any) -> str:
    """The busy test guest (vmigrate/guest.py) as a bed's daemons run it: its console in
    ``CONSOLE_DIR``, no NIC (the daemons run without networks)."""
    from vmigrate.guest import guest_xml  # noqa: PLC0415

    return guest_xml(
        name, kernel, initrd, console=f"{CONSOLE_DIR}/{name}.log", network=False, **options
    )


class BedUnavailable(RuntimeError):
    """Something the bed needs is missing; the message says what."""


def missing() -> str | None:
    """Why the bed cannot run here, or None."""
    for tool in ("libvirtd", "virsh", "unshare", "qemu-system-x86_64"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    if os.geteuid() != 0:
        return "two libvirt daemons on one machine need root (mount namespaces)"
    try:
        import libvirt  # noqa: F401, PLC0415
    except ImportError:
        return "libvirt-python is not installed"
    return None


def ensure_qemu_user() -> None:
    """Create the system user the qemu driver looks up at start-up (libvirt-daemon-system's)."""
    try:
        pwd.getpwnam(QEMU_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", QEMU_USER], check=True
        )


LIBVIRTD_CONF = """host_uuid = "{host_uuid}"
auth_unix_rw = "none"
auth_unix_ro = "none"
unix_sock_rw_perms = "0700"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""

QEMU_CONF = """user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
migration_host = "{address}"
migration_address = "{address}"
migration_port_min = {port_min}
migration_port_max = {port_max}
"""


@dataclass
class Daemon:
    """One libvirt daemon acting as host ``name``."""

    name: str
    root: Path
    address: str
    ports: range
    host_uuid: str = field(default_factory=lambda: str(uuidlib.uuid4()))
    reapers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def hostname(self) -> str:
        return f"{self.name}.example.test"

    @property
    def socket(self) -> Path:
        return self.root / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        """How clients and peer daemons reach this daemon (a path every namespace sees)."""
        return f"qemu+unix:///system?socket={self.socket}"

    def worker_options(self) -> tuple[list[str], dict[str, str]]:
        """The arguments and settings of the vmigrate worker beside this daemon."""
        args = ["--driver", "libvirt", "--libvirt-uri", self.uri]
        roots = ("/boot", str(self.root.parent), CONSOLE_DIR, IMAGES_DIR)
        env = {
            "VMIGRATE_STORAGE_ROOTS": ":".join(roots),
            "VMIGRATE_MIGRATION_ADDRESS": self.address,
            "VMIGRATE_MIGRATION_PORT_MIN": str(self.ports.start),
            "VMIGRATE_MIGRATION_PORT_MAX": str(self.ports.stop - 1),
        }
        return args, env

    def image_file(self, name: str) -> Path:
        """Where this daemon sees ``IMAGES_DIR/name`` (its private directory, seen from here)."""
        return self.root / "images" / name

    def console_file(self, guest: str) -> Path:
        """Where this daemon's QEMU writes ``guest``'s console (``CONSOLE_DIR`` seen from here)."""
        return self.root / "lib" / "consoles" / f"{guest}.log"

    def _configure(self) -> None:
        for sub, mount_point in PRIVATE.items():
            (self.root / sub).mkdir(parents=True, exist_ok=True)
            Path(mount_point).mkdir(parents=True, exist_ok=True)
        (self.root / "lib" / "consoles").mkdir(exist_ok=True)
        (self.root / "etc" / "libvirtd.conf").write_text(
            LIBVIRTD_CONF.format(host_uuid=self.host_uuid)
        )
        (self.root / "etc" / "qemu.conf").write_text(
            QEMU_CONF.format(
                address=self.address, port_min=self.ports.start, port_max=self.ports.stop - 1
            )
        )

    def _script(self) -> str:
        binds = " && ".join(f"mount --bind {self.root / sub} {PRIVATE[sub]}" for sub in PRIVATE)
        return (
            f"{binds} && hostname {self.hostname} && "
            f"exec libvirtd --pid-file {self.root / 'libvirtd.pid'}"
        )

    def start(self, timeout: float = 30.0) -> None:
        """Start (or restart) the daemon and wait until it answers."""
        self._configure()
        log = open(self.root / "daemon.log", "ab")  # noqa: SIM115 (the child owns it)
        argv = ["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c"]
        self.reapers.append(
            subprocess.Popen(
                [sys.executable, "-m", "vmigrate.reaper", *argv, self._script()],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.reapers[-1].poll() is not None or time.monotonic() > deadline:
                tail = (self.root / "daemon.log").read_text(errors="replace")[-2000:]
                raise BedUnavailable(f"libvirtd for {self.name} did not start:\n{tail}")
            time.sleep(0.2)

    def answers(self) -> bool:
        if not self.socket.exists():
            return False
        done = subprocess.run(
            ["virsh", "-c", self.uri, "uri"], capture_output=True, timeout=30, check=False
        )
        return done.returncode == 0

    def virsh(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            ["virsh", "-c", self.uri, *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"virsh {' '.join(args)} on {self.name}: {done.stderr.strip()}")
        return done.stdout

    def daemon_pid(self) -> int | None:
        try:
            return int((self.root / "libvirtd.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def kill_daemon(self) -> None:
        """SIGKILL libvirtd only: its QEMUs live on, as on a host whose libvirtd crashed."""
        pid = self.daemon_pid()
        if pid is not None:
            _kill(pid)
            _wait_gone(pid)
        self.socket.unlink(missing_ok=True)

    def qemu_pids(self) -> list[int]:
        """Live QEMU processes of this daemon (its reapers' children other than libvirtd)."""
        return [p for p in self._children() if _comm(p).startswith("qemu-system")]

    def _children(self) -> list[int]:
        mine = {r.pid for r in self.reapers}
        return [p for p in _live_pids() if _ppid(p) in mine]

    def stop(self) -> None:
        """End libvirtd, every QEMU it started, and the reapers, by pid."""
        for pid in self._children():
            _kill(pid)
        for reaper in self.reapers:
            if reaper.poll() is None:
                reaper.kill()
            reaper.wait(timeout=10)
        self.reapers.clear()


@dataclass
class Bed:
    daemons: list[Daemon]

    def start(self) -> None:
        ensure_qemu_user()
        for daemon in self.daemons:
            daemon.start()
        for daemon in self.daemons:  # the first domcapabilities probes QEMU for seconds
            daemon.virsh("domcapabilities", "--virttype", "qemu")

    def stop(self) -> None:
        for daemon in self.daemons:
            daemon.stop()


def make_bed(root: Path, names: list[str], first_port: int = 49152, per_host: int = 64) -> Bed:
    """Daemons called ``names`` under ``root``: 127.0.0.2, .3, ... and ports of their own."""
    return Bed(
        [
            Daemon(
                name,
                root / name,
                f"127.0.0.{index + 2}",
                range(first_port + index * per_host, first_port + (index + 1) * per_host),
            )
            for index, name in enumerate(names)
        ]
    )


def _live_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _state(int(entry.name)) not in ("Z", "X", ""):
            pids.append(int(entry.name))
    return pids


def _stat(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _state(pid: int) -> str:
    fields = _stat(pid)
    return fields[0] if fields else ""


def _ppid(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[1]) if fields else 0


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _state(pid) not in ("Z", "X", "") and time.monotonic() < deadline:
        time.sleep(0.05)
