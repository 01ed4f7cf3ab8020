"""The simulated hypervisor: real driver code, as nova's fake driver is, and what scale tests run.

Domains (name, uuid, memory, vcpus, state) persist in the host's state directory; Prepare reserves
memory against the host's capacity and opens a real TCP port; Perform sends the stream header over
it and then models the pre-copy in time; faults declared in a domain's metadata make any phase fail.
"""

from __future__ import annotations

from workers.drivers.simbase import SimConfig
from workers.drivers.simdest import SimDestination
from workers.drivers.simsource import SimSource


class SimDriver(SimSource, SimDestination):
    """Both sides of the simulated hypervisor on one host."""


__all__ = ["SimConfig", "SimDriver"]
