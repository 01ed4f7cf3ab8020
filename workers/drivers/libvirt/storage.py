"""Storage migration on the libvirt driver: libvirt copies the disks itself (``NON_SHARED_DISK``
or ``NON_SHARED_INC`` with ``migrate_disks``); the destination's images are created first, as
nova's ``pre_live_migration`` does, through the daemon's storage API (a transient directory pool
per image directory), so that they exist in the daemon's view of the filesystem and only those
created here are deleted when the migration fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Any
from xml.sax.saxutils import quoteattr

from workers import safexml
from workers.cookie import CookieDisk
from workers.disks import Disk
from workers.drivers.base import DriverError
from workers.drivers.libvirt.binding import libvirt


def describe(dom: Any, disks: list[Disk], incremental: bool) -> tuple[CookieDisk, ...]:
    """Each disk's virtual size (``blockInfo``), format and, ``incremental``, backing file."""
    root = safexml.parse(dom.XMLDesc(0), "domain XML")
    found = []
    for disk in disks:
        capacity = int(dom.blockInfo(disk.target)[0])
        backing = backing_format = None
        if incremental:
            el = next(
                (
                    d.find("backingStore")
                    for d in root.iterfind("devices/disk")
                    if d.find("target") is not None and d.find("target").get("dev") == disk.target  # type: ignore[union-attr]
                ),
                None,
            )
            source = el.find("source") if el is not None else None
            if source is not None and source.get("file"):
                backing = source.get("file")
                fmt = el.find("format") if el is not None else None
                backing_format = fmt.get("type", "raw") if fmt is not None else "raw"
        found.append(CookieDisk(disk.target, capacity, disk.format, backing, backing_format))
    return tuple(found)


def _existing_pool(conn: Any, directory: str) -> Any:
    """An active pool the daemon already has over ``directory`` (an operator's, or libvirt's
    ``default``): libvirt refuses a second pool on one directory."""
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        target = safexml.parse(pool.XMLDesc(0), "storage pool XML").findtext("target/path")
        if target and os.path.normpath(target) == os.path.normpath(directory):
            return pool
    return None


def _pool(conn: Any, directory: str) -> Any:
    """The daemon's pool over ``directory``, or a transient one made for it; refreshed."""
    name = "vmigrate-" + hashlib.sha256(directory.encode()).hexdigest()[:16]
    pool = _existing_pool(conn, directory)
    if pool is None:
        xml = (
            f"<pool type='dir'><name>{name}</name><target><path>{_text(directory)}</path>"
            "</target></pool>"
        )
        try:
            pool = conn.storagePoolCreateXML(xml, libvirt.VIR_STORAGE_POOL_CREATE_WITH_BUILD)
        except libvirt.libvirtError as exc:
            raise DriverError(f"no storage pool over {directory}: {exc}") from None
    pool.refresh(0)
    return pool


def _text(value: str) -> str:
    return quoteattr(value)[1:-1]


def _volume(pool: Any, name: str) -> Any:
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError:
        return None


def create_images(conn: Any, wanted: tuple[CookieDisk, ...], paths: dict[str, str]) -> list[str]:
    """Create the missing images of ``wanted`` at ``paths`` (by target); returns those created.
    An existing image must have the exact size; a backing file must already be there."""
    created: list[str] = []
    try:
        for disk in wanted:
            path = paths.get(disk.target)
            if path is None:
                raise DriverError(f"the definition has no disk {disk.target}", "DISK_NOT_FOUND")
            if disk.backing:
                backing = os.path.join(os.path.dirname(path), disk.backing)
                found = _volume(_pool(conn, os.path.dirname(backing)), os.path.basename(backing))
                if found is None:
                    raise DriverError(
                        f"--copy-storage-inc: disk {disk.target}'s backing file {backing} is "
                        "not on this host; copy it first or use --copy-storage-all",
                        "BACKING_MISSING",
                    )
            pool = _pool(conn, os.path.dirname(path))
            existing = _volume(pool, os.path.basename(path))
            if existing is not None:
                size = int(existing.info()[1])
                if size != disk.capacity:
                    raise DriverError(
                        f"disk {disk.target}: the image already at {path} is {size} bytes, the "
                        f"source's is {disk.capacity}",
                        "DISK_SIZE_MISMATCH",
                    )
                continue
            pool.createXML(_volume_xml(os.path.basename(path), disk, path), 0)
            created.append(path)
    except libvirt.libvirtError as exc:
        remove_images(conn, created)
        raise DriverError(
            f"cannot create the destination's images: {exc}", "DISK_CREATE_FAILED"
        ) from None
    except DriverError:
        remove_images(conn, created)
        raise
    return created


def _volume_xml(name: str, disk: CookieDisk, path: str) -> str:
    backing = ""
    if disk.backing:
        full = os.path.join(os.path.dirname(path), disk.backing)
        backing = (
            f"<backingStore><path>{_text(full)}</path>"
            f"<format type='{disk.backing_format or 'raw'}'/></backingStore>"
        )
    return (
        f"<volume><name>{_text(name)}</name><capacity unit='bytes'>{disk.capacity}</capacity>"
        f"<target><format type='{disk.format}'/></target>{backing}</volume>"
    )


def remove_images(conn: Any, paths: list[str]) -> None:
    """Delete the images Prepare created (never another)."""
    for path in paths:
        with contextlib.suppress(libvirt.libvirtError):  # already gone
            conn.storageVolLookupByPath(path).delete(0)
