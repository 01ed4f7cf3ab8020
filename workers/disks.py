"""A domain's disks as storage migration sees them, and which of them a migration copies.

libvirt copies, with ``--copy-storage-all``/``-inc``, every disk that has a source, is writable
and is not shared (``qemuMigrationAnyCopyDisk``); ``--migrate-disks`` narrows that to the named
targets, and naming one it cannot copy is an error, not a silent skip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from lxml import etree

from workers import safexml


class DiskSelectionError(ValueError):
    """``--migrate-disks`` names a disk the domain has not, or one that cannot be copied."""

    def __init__(self, message: str, code: str = "DISK_NOT_FOUND") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Disk:
    target: str
    path: str | None  # the host file (or block device); None for an empty drive
    format: str
    readonly: bool
    shareable: bool

    @property
    def copyable(self) -> bool:
        return self.path is not None and not self.readonly and not self.shareable

    def as_dict(self) -> dict[str, object]:
        return {"target": self.target, "copyable": self.copyable}


class Selectable(Protocol):
    """What choosing the disks to copy needs of one: a ``Disk``, or what a host published."""

    @property
    def target(self) -> str: ...

    @property
    def copyable(self) -> bool: ...


@dataclass(frozen=True)
class PublishedDisk:
    """A disk as a host's inventory lists it (``Disk.as_dict``)."""

    target: str
    copyable: bool


D = TypeVar("D", bound=Selectable)


def disks_of(root: etree._Element) -> list[Disk]:
    """The ``<disk>`` devices of a parsed domain, in document order."""
    found = []
    for disk in root.iterfind("devices/disk"):
        source = disk.find("source")
        path = None
        if source is not None:
            path = source.get("file") or source.get("dev")
        driver = disk.find("driver")
        target = disk.find("target")
        found.append(
            Disk(
                target=target.get("dev", "") if target is not None else "",
                path=path,
                format=driver.get("type", "raw") if driver is not None else "raw",
                readonly=disk.find("readonly") is not None or disk.get("device") == "cdrom",
                shareable=disk.find("shareable") is not None,
            )
        )
    return found


def disks_in_xml(xml: str) -> list[Disk]:
    return disks_of(safexml.parse(xml, "domain XML"))


def disks_to_copy(disks: Sequence[D], named: Sequence[str]) -> list[D]:
    """The disks a storage migration copies: ``named`` ones (each must exist and be copyable),
    or, when none are named, every copyable disk."""
    if not named:
        return [d for d in disks if d.copyable]
    by_target = {d.target: d for d in disks}
    chosen = []
    for target in named:
        disk = by_target.get(target)
        if disk is None:
            have = ", ".join(d.target for d in disks) or "none"
            raise DiskSelectionError(
                f"--migrate-disks names {target!r}, which the domain does not have (its "
                f"disks: {have})"
            )
        if not disk.copyable:
            raise DiskSelectionError(
                f"cannot migrate empty, read-only or shareable disk {target!r}", "DISK_NOT_COPYABLE"
            )
        chosen.append(disk)
    return chosen


def check_inventory_disks(found: list[dict[str, object]], named: list[str]) -> None:
    """The early check at submission, over the disks a host published (``Disk.as_dict``)."""
    disks_to_copy([PublishedDisk(str(d["target"]), bool(d.get("copyable"))) for d in found], named)
