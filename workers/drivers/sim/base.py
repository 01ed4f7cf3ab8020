"""What both sides of the sim driver share: its settings, its fault injection, how it starts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from workers import domxml
from workers.drivers.base import DomainInfo, DriverError, InjectedFault
from workers.drivers.shared.config import HostConfig
from workers.drivers.shared.host import HostDriver
from workers.drivers.sim import stream
from workers.drivers.sim.knobs import FAULT_PHASES, read_knobs


def fault_phases(text: str) -> frozenset[str]:
    """``prepare,finish``: the phases a host is told to fail (``--fail-phase``), checked."""
    phases = frozenset(p.strip() for p in text.split(",") if p.strip())
    unknown = sorted(phases - set(FAULT_PHASES))
    if unknown:
        raise ValueError(f"a sim host fails one of {', '.join(FAULT_PHASES)}, not {unknown[0]!r}")
    return phases


@dataclass(frozen=True)
class SimConfig(HostConfig):
    #: The simulated link between hosts, in MiB/s (a migration's --bandwidth caps it lower).
    link_mibps: float = 100000.0
    #: The pause a converging pre-copy ends with, in seconds.
    max_downtime_s: float = 0.3
    #: Simulated seconds per real second (benchmarks make transfers take no time).
    time_scale: float = 1.0
    #: Phases this host fails, whatever the domain (``--fail-phase``; ``vmigrate fault`` changes
    #: them while it runs), as nova's fake driver can be told to.
    faults: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Fault:
    """An injected failure: a reported error (``InjectedFault``), or a bug (any exception)."""

    why: str
    bug: bool = False

    def throw(self, detail: str = "") -> NoReturn:
        message = self.why + detail
        raise RuntimeError(message) if self.bug else InjectedFault(message)


class SimBase(HostDriver):
    NAME = "sim"
    config: SimConfig

    def __init__(self, config: SimConfig) -> None:
        super().__init__(config)
        self._listeners: dict[str, stream.IncomingListener] = {}
        self.faults = config.faults

    def set_faults(self, phases: list[str]) -> list[str]:
        self.faults = fault_phases(",".join(phases))
        return sorted(self.faults)

    def _faulty(self, xml: str | None, phase: str) -> Fault | None:
        """How ``phase`` must fail (the host was told so, or the domain's metadata), or None."""
        if phase in self.faults:
            return Fault(f"fault injected in {phase} by host {self.config.host}'s --fail-phase")
        knobs = read_knobs(xml)
        if phase in knobs.bugs:
            return Fault(f"bug injected in {phase} by the domain's sim metadata", bug=True)
        if phase in knobs.faults:
            return Fault(f"fault injected in {phase} by the domain's sim metadata")
        return None

    def _fault(self, xml: str | None, phase: str) -> None:
        fault = self._faulty(xml, phase)
        if fault:
            fault.throw()

    def _validate(self, dom: domxml.Domain) -> None:
        read_knobs(dom.xml)  # refuses knobs it cannot read

    def start(self, name: str) -> DomainInfo:
        with self.state.change():
            dom = self._domain(name)
            if dom["state"] != "shutoff":
                raise DriverError(f"domain '{name}' is already active", "DOMAIN_ACTIVE")
            self._check_room(dom["memory_kib"], what=name)
            dom["state"] = "running"
            return self._info(name)
