"""What both sides of the sim driver share: its settings, its fault injection, how it starts."""

from __future__ import annotations

from dataclasses import dataclass

from workers import domxml
from workers.drivers.base import DomainInfo, DriverError, InjectedFault
from workers.drivers.shared.config import HostConfig
from workers.drivers.shared.host import HostDriver
from workers.drivers.sim import stream
from workers.drivers.sim.knobs import read_knobs


@dataclass(frozen=True)
class SimConfig(HostConfig):
    #: The simulated link between hosts, in MiB/s (a migration's --bandwidth caps it lower).
    link_mibps: float = 100000.0
    #: The pause a converging pre-copy ends with, in seconds.
    max_downtime_s: float = 0.3
    #: Simulated seconds per real second (benchmarks make transfers take no time).
    time_scale: float = 1.0


class SimBase(HostDriver):
    NAME = "sim"
    config: SimConfig

    def __init__(self, config: SimConfig) -> None:
        super().__init__(config)
        self._listeners: dict[str, stream.IncomingListener] = {}

    @staticmethod
    def _fault(xml: str | None, phase: str) -> None:
        if phase in read_knobs(xml).faults:
            raise InjectedFault(f"fault injected in {phase} by the domain's sim metadata")

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
