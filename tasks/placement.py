"""Choosing destinations for an evacuation: a pure function, spreading VMs by free memory."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Target:
    name: str
    free_kib: int
    protocols: frozenset[int]
    planned: int = 0


def place(
    vms: list[tuple[str, int]], targets: list[Target], source_protocols: frozenset[int]
) -> dict[str, str | None]:
    """Map each (name, memory_kib) to the compatible target with the most free memory left, or None.

    Largest VMs are placed first (first-fit decreasing); ties go to the target with fewer VMs
    planned, so VMs spread across hosts.
    """
    choice: dict[str, str | None] = {}
    usable = [t for t in targets if t.protocols & source_protocols]
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
