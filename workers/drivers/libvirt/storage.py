"""Storage migration on the libvirt driver: libvirt copies the disks itself (``NON_SHARED_DISK``
or ``NON_SHARED_INC`` with ``migrate_disks``); the destination's images are created first, as
nova's ``pre_live_migration`` does, through the daemon's storage API (a transient directory pool
per image directory, or the pool the daemon has there), so that they exist in the daemon's view of
the filesystem; the rules, and that only those created are deleted when the migration fails, are
workers/drivers/shared/images.py's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Any
from xml.sax.saxutils import quoteattr

from lxml import etree

from workers import safexml
from workers.cookie import CookieDisk
from workers.disks import Disk
from workers.drivers.base import DriverError
from workers.drivers.libvirt.binding import libvirt
from workers.drivers.shared.images import backing_path


def describe(dom: Any, disks: list[Disk], incremental: bool) -> tuple[CookieDisk, ...]:
    """Each disk's virtual size (``blockInfo``), format and, ``incremental``, backing file."""
    root = safexml.parse(dom.XMLDesc(0), "domain XML")
    elements = _backing_stores(root)
    found = []
    for disk in disks:
        capacity = int(dom.blockInfo(disk.target)[0])
        backing = backing_format = None
        store = elements.get(disk.target)
        if incremental and store is not None:
            source, fmt = store.find("source"), store.find("format")
            if source is not None and source.get("file"):
                backing = source.get("file")
                backing_format = fmt.get("type", "raw") if fmt is not None else "raw"
        found.append(CookieDisk(disk.target, capacity, disk.format, backing, backing_format))
    return tuple(found)


def _backing_stores(root: etree._Element) -> dict[str, etree._Element]:
    """Each disk's ``<backingStore>`` in the live XML, by target."""
    found = {}
    for disk in root.iterfind("devices/disk"):
        target, store = disk.find("target"), disk.find("backingStore")
        if target is not None and store is not None:
            found[target.get("dev", "")] = store
    return found


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
    try:
        return _refreshed_pool(conn, directory)
    except libvirt.libvirtError as exc:
        raise DriverError(
            f"cannot create the destination's images: {exc}", "DISK_CREATE_FAILED"
        ) from None


def _refreshed_pool(conn: Any, directory: str) -> Any:
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


class PoolImages:
    """The libvirt driver's images, as the destination daemon sees them: volumes of a directory
    pool (an ``ImageStore``, workers/drivers/shared/images.py)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def _volume(self, path: str) -> Any:
        return _volume(_pool(self.conn, os.path.dirname(path)), os.path.basename(path))

    def exists(self, path: str) -> bool:
        return self._volume(path) is not None

    def size(self, path: str) -> int:
        try:
            return int(self._volume(path).info()[1])
        except libvirt.libvirtError as exc:
            raise DriverError(f"cannot read image {path}: {exc}", "DISK_UNREADABLE") from None

    def create(self, path: str, disk: CookieDisk) -> None:
        pool = _pool(self.conn, os.path.dirname(path))
        try:
            pool.createXML(_volume_xml(os.path.basename(path), disk, path), 0)
        except libvirt.libvirtError as exc:
            raise DriverError(
                f"cannot create the destination's images: {exc}", "DISK_CREATE_FAILED"
            ) from None

    def remove(self, path: str) -> None:
        with contextlib.suppress(libvirt.libvirtError):  # already gone
            self.conn.storageVolLookupByPath(path).delete(0)


def _volume_xml(name: str, disk: CookieDisk, path: str) -> str:
    backing = ""
    if disk.backing:
        full = backing_path(path, disk.backing)
        backing = (
            f"<backingStore><path>{_text(full)}</path>"
            f"<format type='{disk.backing_format or 'raw'}'/></backingStore>"
        )
    return (
        f"<volume><name>{_text(name)}</name><capacity unit='bytes'>{disk.capacity}</capacity>"
        f"<target><format type='{disk.format}'/></target>{backing}</volume>"
    )
