"""The sim driver's knobs, read from a domain's metadata in the ``urn:vmigrate:sim:1`` namespace.

<metadata>
  <sim:sim xmlns:sim="urn:vmigrate:sim:1" dirty-rate-mibps="200">
    <sim:fault phase="perform"/>
    <sim:fault phase="prepare" kind="bug"/>
  </sim:sim>

A fault is an error the driver reports (``INJECTED_FAULT``); ``kind="bug"`` makes the driver
raise an exception of no kind it declares instead, as a bug or a library's surprise would.
</metadata>
"""

from __future__ import annotations

from dataclasses import dataclass

from workers import safexml

NAMESPACE = "urn:vmigrate:sim:1"
FAULT_PHASES = ("begin", "prepare", "perform", "finish", "confirm")


@dataclass(frozen=True)
class SimKnobs:
    dirty_rate_mibps: float = 0.0
    faults: frozenset[str] = frozenset()
    bugs: frozenset[str] = frozenset()


def read_knobs(xml: str | None) -> SimKnobs:
    if not xml:
        return SimKnobs()
    root = safexml.parse(xml, "domain XML")
    sim = root.find(f"metadata/{{{NAMESPACE}}}sim")
    if sim is None:
        return SimKnobs()
    try:
        rate = float(sim.get("dirty-rate-mibps", "0"))
    except ValueError:
        raise ValueError(
            f"sim dirty-rate-mibps must be a number, got {sim.get('dirty-rate-mibps')!r}"
        ) from None
    if rate < 0:
        raise ValueError("sim dirty-rate-mibps must not be negative")
    found: dict[str, set[str]] = {"error": set(), "bug": set()}
    for fault in sim.findall(f"{{{NAMESPACE}}}fault"):
        phase, kind = fault.get("phase", ""), fault.get("kind", "error")
        if phase not in FAULT_PHASES:
            raise ValueError(
                f"sim fault phase must be one of {', '.join(FAULT_PHASES)}, not {phase!r}"
            )
        if kind not in found:
            raise ValueError(f"sim fault kind must be error or bug, not {kind!r}")
        found[kind].add(phase)
    return SimKnobs(rate, frozenset(found["error"]), frozenset(found["bug"]))
