"""Host files a domain definition names, and the rule that they lie inside the storage roots.

A definition reaches a host from an operator (define) or from an API client (a destination XML),
and the hypervisor opens what it names as root: disk images, kernels and initrds, firmware and
serial-console files. Every such path must resolve (``..`` and symlinks followed) inside one of
the host's ``storage_roots``; anything else is refused, naming the path and the setting.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from lxml import etree

from workers.drivers.base import DriverError

SETTING = "storage_roots (VMIGRATE_STORAGE_ROOTS)"
#: ``<os>`` children that name a host file.
OS_FILES = ("kernel", "initrd", "loader", "nvram", "dtb")
#: Character devices whose ``<source path>`` is a host file (a ``pty``'s path is the host's own).
CHARDEVS = ("serial", "console", "parallel", "channel")
CHARDEV_FILE_TYPES = ("file", "pipe", "dev")


class PathOutsideRoots(DriverError):
    code = "PATH_OUTSIDE_STORAGE_ROOTS"


def host_paths(root: etree._Element) -> list[tuple[str, str]]:
    """``(what, path)`` for every host path in a parsed definition, in document order.
    Relative console paths are left out: the QEMU driver keeps those in the domain's own
    directory."""
    found: list[tuple[str, str]] = []
    for tag in OS_FILES:
        text = (root.findtext(f"os/{tag}") or "").strip()
        if text:
            found.append((f"<os><{tag}>", text))
    for disk in root.iterfind("devices/disk"):
        target = disk.find("target")
        name = target.get("dev", "?") if target is not None else "?"
        for source in disk.iter("source"):
            path = source.get("file") or source.get("dev")
            if path:
                found.append((f"disk {name}", path))
    for tag in CHARDEVS:
        for dev in root.iterfind(f"devices/{tag}"):
            chardev = dev.find("source")
            path = chardev.get("path") if chardev is not None else None
            if dev.get("type") in CHARDEV_FILE_TYPES and path and os.path.isabs(path):
                found.append((f"<{tag} type='{dev.get('type')}'>", path))
    return found


def inside(path: str, roots: Iterable[str]) -> bool:
    """Whether ``path``, resolved as the host resolves it, lies inside one of ``roots``."""
    if not os.path.isabs(path):
        return False
    real = os.path.realpath(path)
    for root in roots:
        base = os.path.realpath(root)
        if os.path.commonpath([real, base]) == base:
            return True
    return False


def check_host_paths(root: etree._Element, roots: tuple[str, ...], where: str) -> None:
    """Refuse a definition naming a host path outside ``roots`` (``where``: define, Prepare)."""
    for what, path in host_paths(root):
        if not inside(path, roots):
            allowed = ", ".join(roots) or "none"
            raise PathOutsideRoots(
                f"{where}: {what} names {path!r}, which is outside the host's storage roots "
                f"({allowed}); store it under one of them or add its directory to {SETTING}"
            )
