"""Drivers by name: ``vmigrate worker --driver NAME`` loads one through ``load_driver``.

Each driver package offers ``from_settings(DriverSettings) -> Driver``; it is imported only when
chosen, so a sim worker never loads QEMU's modules. Adding a driver is one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.drivers.base import Driver

#: Driver name -> the package that builds it.
DRIVERS: dict[str, str] = {
    "sim": "workers.drivers.sim",
    "qemu": "workers.drivers.qemu",
    "libvirt": "workers.drivers.libvirt",
}


@dataclass(frozen=True)
class DriverSettings:
    """What a worker knows when it builds its host's driver."""

    host: str
    state_dir: Path
    protocols: frozenset[int]
    memory_mib: int
    migration_address: str
    ports: range
    host_uuid: str | None = None
    storage_roots: tuple[str, ...] = ()
    #: Driver-specific values by name (the sim's link_mibps and time_scale, QEMU's and
    #: libvirt's completion_timeout_per_gib, libvirt's libvirt_uri and libvirt_peer_uri); a
    #: driver takes those it knows.
    extra: Mapping[str, float | str] = field(default_factory=dict)

    def host_fields(self) -> dict[str, Any]:
        """What every driver's configuration (``HostConfig``) takes from these settings."""
        return {
            "host": self.host,
            "state_dir": self.state_dir,
            "protocols": self.protocols,
            "memory_mib": self.memory_mib,
            "migration_address": self.migration_address,
            "ports": self.ports,
            "host_uuid": self.host_uuid,
            "storage_roots": self.storage_roots,
        }


class UnknownDriver(ValueError):
    pass


def load_driver(name: str, settings: DriverSettings) -> Driver:
    """The driver called ``name``, built for one host."""
    if name not in DRIVERS:
        raise UnknownDriver(f"unknown driver {name!r}: choose one of {', '.join(sorted(DRIVERS))}")
    module = importlib.import_module(DRIVERS[name])
    driver: Driver = module.from_settings(settings)
    return driver
