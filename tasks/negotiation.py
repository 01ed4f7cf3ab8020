"""Protocol negotiation: pure functions, as libvirt's client asks SupportsFeature on both ends."""

from __future__ import annotations

from dataclasses import dataclass

from tasks.errors import Refused
from workers.drivers.base import OFFLINE
from workers.drivers.flags import COPY_STORAGE

PREFERENCE = (3, 2, 1)


@dataclass(frozen=True)
class Wants:
    """What a migration request needs from the protocol version."""

    rename: bool = False
    dest_xml: bool = False
    offline: bool = False
    copy_storage: bool = False

    @classmethod
    def of(cls, dname: str | None, xml: str | None, flags: frozenset[str]) -> Wants:
        return cls(bool(dname), xml is not None, OFFLINE in flags, bool(flags & COPY_STORAGE))


def why_not(version: int, wants: Wants) -> tuple[str, str] | None:
    """The (code, reason) that ``version`` cannot carry this request, or None if it can."""
    if wants.rename and version == 1:
        return "DNAME_UNSUPPORTED", "protocol v1 cannot rename a domain (--dname)"
    if wants.dest_xml and version != 3:
        return "DEST_XML_UNSUPPORTED", (
            f"protocol v{version} cannot carry a destination XML (--xml); only v3 can"
        )
    if wants.offline and version != 3:
        return "OFFLINE_UNSUPPORTED", f"offline migration needs protocol v3, not v{version}"
    if wants.copy_storage and version != 3:
        return "STORAGE_MIGRATION_UNSUPPORTED", (
            f"storage migration needs protocol v3 (Begin tells the destination each disk's "
            f"size), not v{version}"
        )
    return None


def common_versions(source: frozenset[int], destination: frozenset[int]) -> list[int]:
    """Versions both hosts support, most preferred first."""
    return [v for v in PREFERENCE if v in source and v in destination]


def negotiate(source: frozenset[int], destination: frozenset[int], wants: Wants) -> list[int]:
    """Usable versions, best first; the first is the one to use. Refuses with a clear reason."""
    common = common_versions(source, destination)
    if not common:
        raise Refused(
            "NO_COMMON_PROTOCOL",
            f"the hosts share no migration protocol version (source supports "
            f"{sorted(source)}, destination supports {sorted(destination)})",
        )
    best = common[0]
    reason = why_not(best, wants)
    if reason:
        code, text = reason
        raise Refused(code, f"{text}, and v{best} is the highest version both hosts support")
    return [v for v in common if why_not(v, wants) is None]


def fallback(candidates: list[int], refused: int) -> int | None:
    """The next version to try after a host refused ``refused`` (stale registry), or None."""
    lower = [v for v in candidates if v < refused]
    return lower[0] if lower else None
