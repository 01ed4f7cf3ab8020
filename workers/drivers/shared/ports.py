"""The search for a free migration port in a host's range, for any driver."""

from __future__ import annotations

import socket
from collections.abc import Iterator

from workers.drivers.base import DriverError


def candidates(ports: range, taken: set[int]) -> Iterator[int]:
    """The ports of the range that no prepared migration of this host holds, in order."""
    return (port for port in ports if port not in taken)


def no_free_port(ports: range, address: str) -> DriverError:
    return DriverError(
        f"no free migration port in {ports.start}-{ports.stop - 1} on {address}",
        "NO_MIGRATION_PORT",
    )


def family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def probe_free_port(address: str, ports: range, taken: set[int]) -> int:
    """A port nobody binds right now, for a process (QEMU) that binds it itself."""
    for port in candidates(ports, taken):
        with socket.socket(family(address)) as probe:
            try:
                probe.bind((address, port))
            except OSError:
                continue
            return port
    raise no_free_port(ports, address)
