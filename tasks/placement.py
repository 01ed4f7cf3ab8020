"""Choosing destinations for an evacuation: a pure function, spreading VMs by free memory."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Target:
    name: str
    free_kib: int
    protocols: frozenset[int]
    planned: int = 0
    driver: str = ""


def drivers_compatible(source: str, destination: str) -> bool:
    """A VM moves only between hosts of one driver: a libvirt domain cannot land in vmigrate's
    own QEMU driver or the sim, nor the reverse (their migration streams and cookies differ)."""
    return source == destination


def place(
    vms: list[tuple[str, int]],
    targets: list[Target],
    source_protocols: frozenset[int],
    source_driver: str = "",
) -> dict[str, str | None]:
    """Map each (name, memory_kib) to the compatible target with the most free memory left, or None.

    Largest VMs are placed first (first-fit decreasing); ties go to the target with fewer VMs
    planned, so VMs spread across hosts.
    """
    choice: dict[str, str | None] = {}
    usable = [
        t
        for t in targets
        if t.protocols & source_protocols
        and (not source_driver or drivers_compatible(source_driver, t.driver))
    ]
    for name, memory in sorted(vms, key=lambda vm: (-vm[1], vm[0])):
        fitting = [t for t in usable if t.free_kib >= memory]
        if not fitting:
            choice[name] = None
            continue
        best = max(fitting, key=lambda t: (t.free_kib - memory, -t.planned, t.name))
        best.free_kib -= memory
        best.planned += 1
        choice[name] = best.name
    return choice
