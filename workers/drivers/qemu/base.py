"""The QEMU driver, shared part: real QEMU processes, recreated from the domain XML alone.

v2 and v3 only (QEMU never had v1). Prepare starts the destination QEMU paused with
``-incoming defer`` and a port from the range; Perform sets bandwidth, downtime, auto-converge and
post-copy, then ``migrate`` and returns; progress is polled with ``query-migrate``. QEMU processes
are detached, so a restarted worker finds them again by pid file and QMP socket.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from workers import domxml
from workers.drivers.base import (
    Capabilities,
    DomainInfo,
    DomainState,
    DriverError,
    MigrationJob,
)
from workers.drivers.qemu import cmdline, process, qmp
from workers.drivers.simbase import SimBase, SimConfig

GIB = 1024**3
MIB = 1024**2


@dataclass(frozen=True)
class QemuConfig(SimConfig):
    #: A migration still running after this many seconds per GiB of RAM is aborted, or switched
    #: to post-copy when the migration allowed it (KubeVirt's default is 150 s per GiB).
    completion_timeout_per_gib: float = 150.0
    downtime_ms: int = 300


class QemuBase(SimBase):
    config: QemuConfig

    def __init__(self, config: QemuConfig) -> None:
        super().__init__(config)

    def capabilities(self) -> Capabilities:
        return Capabilities(
            "qemu", self.config.protocols & {2, 3}, self.config.memory_mib, self.config.vcpus
        )

    def _paths(self, name: str) -> cmdline.Paths:
        return process.paths_for(self.config.state_dir, name)

    def _live_state(self, name: str) -> DomainState:
        paths = self._paths(name)
        if not process.process_alive(process.read_pid(paths)):
            return "shutoff"
        try:
            status = qmp.execute(paths.qmp, "query-status")["status"]
        except qmp.QMPError:
            return "shutoff"
        return "running" if status == "running" else "paused"

    def _info(self, name: str) -> DomainInfo:
        dom = self.state.domains[name]
        dom["state"] = self._live_state(name)
        return DomainInfo(
            name, dom["uuid"], dom["state"], dom["memory_kib"], dom["vcpus"], dom["persistent"]
        )

    def _launch(self, name: str, xml: str, incoming: bool) -> cmdline.Paths:
        paths = self._paths(name)
        argv = cmdline.build_command(xml, paths, incoming=incoming)
        process.start(argv, paths, accel_kvm="accel=kvm" in " ".join(argv))
        return paths

    # Domain management -------------------------------------------------------------------
    def define(self, xml: str) -> DomainInfo:
        cmdline.validate(domxml.parse_domain(xml, assign_uuid=True).xml)
        return super().define(xml)

    def start(self, name: str) -> DomainInfo:
        with self.state.change():
            dom = self._domain(name)
            if self._live_state(name) != "shutoff":
                raise DriverError(f"domain '{name}' is already active", "DOMAIN_ACTIVE")
            self._check_room(dom["memory_kib"])
            paths = self._launch(name, dom["xml"], incoming=False)
            qmp.execute(paths.qmp, "cont")
            return self._info(name)

    def list_domains(self) -> list[DomainInfo]:
        with self.state.change():
            return [self._info(name) for name in sorted(self.state.domains)]

    def _end_source_domain(self, job: MigrationJob, out: dict[str, Any]) -> None:
        out["ended"] = True
        dom = self.state.domains.get(job.domain)
        if dom is None:
            return
        if "undefine_source" in job.flags or not dom["persistent"]:
            del self.state.domains[job.domain]
        else:
            dom["state"] = "shutoff"


def free_port(address: str, ports: range, taken: set[int]) -> int:
    for port in ports:
        if port in taken:
            continue
        with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as probe:
            try:
                probe.bind((address, port))
            except OSError:
                continue
            return port
    raise DriverError(
        f"no free migration port in {ports.start}-{ports.stop - 1}", "NO_MIGRATION_PORT"
    )


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
