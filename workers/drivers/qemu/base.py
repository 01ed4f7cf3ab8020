"""The QEMU driver, shared part: real QEMU processes, recreated from the domain XML alone.

v2 and v3 only (QEMU never had v1). Prepare starts the destination QEMU paused with
``-incoming defer`` and a port from the range; Perform sets bandwidth, downtime, auto-converge and
post-copy, then ``migrate`` and returns; progress is polled with ``query-migrate``. QEMU processes
are detached, so a restarted worker finds them again by pid file and QMP socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workers import domxml
from workers.drivers.base import DomainInfo, DomainState, DriverError
from workers.drivers.qemu import cmdline, process, qmp
from workers.drivers.shared.config import HostConfig
from workers.drivers.shared.host import HostDriver

GIB = 1024**3
MIB = 1024**2


@dataclass(frozen=True)
class QemuConfig(HostConfig):
    #: A migration still running after this many seconds per GiB of RAM is aborted, or switched
    #: to post-copy when the migration allowed it (KubeVirt's default is 150 s per GiB).
    completion_timeout_per_gib: float = 150.0
    downtime_ms: int = 300


class QemuBase(HostDriver):
    NAME = "qemu"
    SUPPORTED = frozenset({2, 3})
    COPIES_STORAGE = True
    config: QemuConfig

    def _paths(self, name: str) -> cmdline.Paths:
        return process.paths_for(self.config.state_dir, name)

    def _current_state(self, name: str) -> DomainState:
        """What its QEMU process says, or shut off when there is none."""
        paths = self._paths(name)
        if not process.process_alive(process.read_pid(paths)):
            return "shutoff"
        try:
            status = qmp.execute(paths.qmp, "query-status")["status"]
        except qmp.QMPError:
            return "shutoff"
        return "running" if status == "running" else "paused"

    def _launch(self, name: str, xml: str, incoming: bool) -> cmdline.Paths:
        paths = self._paths(name)
        argv = cmdline.build_command(xml, paths, incoming=incoming)
        process.start(argv, paths, accel_kvm="accel=kvm" in " ".join(argv))
        return paths

    # Domain management -------------------------------------------------------------------
    def _validate(self, dom: domxml.Domain) -> None:
        cmdline.validate(dom.xml)
        self._check_host_paths(dom.xml, "define")

    def start(self, name: str) -> DomainInfo:
        with self.state.change():
            dom = self._domain(name)
            if self._current_state(name) != "shutoff":
                raise DriverError(f"domain '{name}' is already active", "DOMAIN_ACTIVE")
            self._check_host_paths(dom["xml"], "start")
            self._check_room(dom["memory_kib"])
            paths = self._launch(name, dom["xml"], incoming=False)
            qmp.execute(paths.qmp, "cont")
            return self._info(name)

    def list_domains(self) -> list[DomainInfo]:
        with self.state.change():  # a guest may have stopped by itself: keep what QEMU says
            return [self._info(name) for name in sorted(self.state.domains)]


def _progress(info: dict[str, Any]) -> dict[str, float]:
    ram = info.get("ram", {})
    total = float(ram.get("total", 0)) or 1.0
    remaining = float(ram.get("remaining", 0))
    page = float(ram.get("page-size", 4096))
    return {
        "memory_total": total,
        "memory_processed": float(ram.get("transferred", 0)),
        "memory_remaining": remaining,
        "memory_iteration": float(ram.get("dirty-sync-count", 0)),
        "memory_dirty_rate": float(ram.get("dirty-pages-rate", 0)) * page,
        "expected_downtime_ms": float(info.get("expected-downtime", 0)),
        "percent": max(0.0, min(99.9, 100.0 * (1 - remaining / total))),
    }
