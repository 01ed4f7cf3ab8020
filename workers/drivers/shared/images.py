"""The destination images of a storage migration: which are created, and the rules they follow.

One set of rules for every driver, whatever creates the files (``qemu-img`` beside the QEMU
driver, the daemon's storage API for libvirt): each disk Begin listed must be in the destination's
definition; a ``--copy-storage-inc`` backing file must already be there; an image already at the
path is used only if it has the exact virtual size (QEMU mirrors into nothing else); the others are
created, and only those are ever removed again, also when creating a later one fails.
"""

from __future__ import annotations

import os
from typing import Protocol

from workers.cookie import CookieDisk
from workers.disks import disks_in_xml
from workers.drivers.base import DriverError


class ImageStore(Protocol):
    """Where a driver's images live, as its hypervisor sees them."""

    def exists(self, path: str) -> bool: ...

    def size(self, path: str) -> int:
        """The image's virtual size in bytes."""

    def create(self, path: str, disk: CookieDisk) -> None: ...

    def remove(self, path: str) -> None:
        """Delete the image; nothing when it is already gone."""


def backing_path(image: str, backing: str) -> str:
    """Where a backing file named in an image's header lies (relative: beside the image)."""
    return os.path.join(os.path.dirname(image), backing)


def disk_paths(xml: str) -> dict[str, str]:
    """The destination definition's image paths, by disk target."""
    return {d.target: d.path for d in disks_in_xml(xml) if d.path}


def create_images(
    store: ImageStore, wanted: tuple[CookieDisk, ...], paths: dict[str, str]
) -> list[str]:
    """Create each missing image of ``wanted`` at ``paths``; returns the paths created."""
    created: list[str] = []
    try:
        for disk in wanted:
            path = paths.get(disk.target)
            if path is None:
                raise DriverError(
                    f"the destination definition has no disk {disk.target}", "DISK_NOT_FOUND"
                )
            if disk.backing and not store.exists(backing_path(path, disk.backing)):
                raise DriverError(
                    f"--copy-storage-inc: disk {disk.target}'s backing file "
                    f"{backing_path(path, disk.backing)} is not on this host; copy it first or "
                    "use --copy-storage-all",
                    "BACKING_MISSING",
                )
            if store.exists(path):
                _check_size(store, path, disk)
                continue
            store.create(path, disk)
            created.append(path)
    except BaseException:
        remove_images(store, created)
        raise
    return created


def _check_size(store: ImageStore, path: str, disk: CookieDisk) -> None:
    size = store.size(path)
    if size != disk.capacity:
        raise DriverError(
            f"disk {disk.target}: the image already at {path} is {size} bytes, the source's "
            f"is {disk.capacity}; QEMU mirrors only into an image of the exact size",
            "DISK_SIZE_MISMATCH",
        )


def remove_images(store: ImageStore, paths: list[str]) -> None:
    """Delete the images Prepare created (never another)."""
    for path in paths:
        store.remove(path)
