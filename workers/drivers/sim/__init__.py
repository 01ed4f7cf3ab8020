"""The simulated hypervisor: real driver code, as nova's fake driver is, and what scale tests run.

Domains (name, uuid, memory, vcpus, state) persist in the host's state directory; Prepare reserves
memory against the host's capacity and opens a real TCP port; Perform sends the stream header over
it and then models the pre-copy in time; faults declared in a domain's metadata make any phase fail.
"""

from __future__ import annotations

from workers.drivers.registry import DriverSettings
from workers.drivers.sim.base import SimConfig, fault_phases
from workers.drivers.sim.destination import SimDestination
from workers.drivers.sim.source import SimSource


class SimDriver(SimSource, SimDestination):
    """Both sides of the simulated hypervisor on one host."""


def from_settings(settings: DriverSettings) -> SimDriver:
    extra = settings.extra
    return SimDriver(
        SimConfig(
            **settings.host_fields(),
            link_mibps=float(extra.get("link_mibps", SimConfig.link_mibps)),
            time_scale=float(extra.get("time_scale", SimConfig.time_scale)),
            faults=fault_phases(str(extra.get("fail_phases", ""))),
        )
    )


__all__ = ["SimConfig", "SimDriver", "from_settings"]
