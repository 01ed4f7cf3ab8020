"""Storage migration on the QEMU driver: libvirt's NBD scheme (``src/qemu/qemu_migration.c``).

The destination's Prepare creates the images that are missing (workers/drivers/shared/images.py,
with ``qemu-img``), starts an NBD
server and exports each disk's format node. The source mirrors each disk into its export
(``blockdev-mirror``); once every mirror is in sync it migrates memory with a pause before the
switch-over, completes the mirrors there (so the copy is consistent: the guest is stopped) and
lets the migration finish. Every step is undone on failure: mirror jobs cancelled and dismissed,
NBD client nodes deleted, the NBD server stopped, and only the images Prepare created removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from workers.cookie import CookieDisk
from workers.disks import Disk
from workers.drivers.base import DriverError
from workers.drivers.qemu import qmp

#: How long one poll waits for the completed mirrors to conclude at the switch-over.
CONCLUDE_WAIT = 5.0
QEMU_IMG = "qemu-img"


def node(target: str) -> str:
    """The disk's format node on both sides (``-blockdev node-name``), and its NBD export."""
    return f"drive-{target}"


def mirror(target: str) -> str:
    """The source's mirror job and its NBD client node."""
    return f"migration-{target}"


# Begin (source) ---------------------------------------------------------------------------------
def describe(sock: Path, disks: list[Disk], incremental: bool) -> tuple[CookieDisk, ...]:
    """What the destination needs to create each image, read from the running QEMU."""
    images = {n["node-name"]: n["image"] for n in qmp.execute(sock, "query-named-block-nodes")}
    found = []
    for disk in disks:
        image = images.get(node(disk.target))
        if image is None:
            raise DriverError(f"QEMU has no block node for disk {disk.target}", "DISK_NOT_FOUND")
        # A disk without a backing file is copied whole, as libvirt does with NON_SHARED_INC.
        backing = image.get("backing-filename") if incremental else None
        backing_image = image.get("backing-image", {})
        found.append(
            CookieDisk(
                disk.target,
                int(image["virtual-size"]),
                disk.format,
                backing,
                backing_image.get("format") if backing else None,
            )
        )
    return tuple(found)


# Prepare (destination) --------------------------------------------------------------------------
def _image_info(path: str) -> dict[str, Any]:
    done = _run([QEMU_IMG, "info", "--output=json", "-U", path])
    if done.returncode:
        raise DriverError(f"cannot read image {path}: {done.stderr.strip()}", "DISK_UNREADABLE")
    info: dict[str, Any] = json.loads(done.stdout)
    return info


class LocalImages:
    """The QEMU driver's images: files on this host, made with ``qemu-img``
    (an ``ImageStore``, workers/drivers/shared/images.py)."""

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def size(self, path: str) -> int:
        return int(_image_info(path).get("virtual-size", -1))

    def create(self, path: str, disk: CookieDisk) -> None:
        argv = [QEMU_IMG, "create", "-q", "-f", disk.format]
        if disk.backing:
            argv += ["-b", disk.backing, "-F", disk.backing_format or "raw"]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        done = _run([*argv, path, str(disk.capacity)])
        if done.returncode:
            raise DriverError(
                f"cannot create image {path}: {done.stderr.strip()}", "DISK_CREATE_FAILED"
            )

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


LOCAL = LocalImages()


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)


def start_exports(sock: Path, address: str, port: int, targets: list[str]) -> None:
    """``nbd-server-start`` on ``address:port`` and one writable export per disk."""
    qmp.execute(
        sock,
        "nbd-server-start",
        {"addr": {"type": "inet", "data": {"host": address, "port": str(port)}}},
    )
    for target in targets:
        try:
            qmp.execute(
                sock,
                "block-export-add",
                {
                    "type": "nbd",
                    "id": node(target),
                    "node-name": node(target),
                    "name": node(target),
                    "writable": True,
                },
            )
        except qmp.QMPError as exc:
            if "lock" in str(exc):
                raise DriverError(
                    f"disk {target}: its image is in use by another QEMU here ({exc}); if both "
                    "hosts share this storage, migrate without --copy-storage-*",
                    "DISK_IN_USE",
                ) from None
            raise


def stop_exports(sock: Path) -> None:
    """``nbd-server-stop`` (removes the exports); nothing when none runs."""
    try:
        qmp.execute(sock, "nbd-server-stop")
    except qmp.QMPError as exc:
        if "not running" not in str(exc):
            raise


# Perform (source) -------------------------------------------------------------------------------
def start_mirrors(
    sock: Path, host: str, port: int, targets: list[str], *, incremental: bool, speed: int = 0
) -> None:
    """An NBD client node and a mirror job per disk (``speed``: bytes/s, 0 for no cap; libvirt
    caps the mirrors with the migration's bandwidth too); a replay skips what already exists."""
    nodes = {n["node-name"] for n in qmp.execute(sock, "query-named-block-nodes")}
    jobs = {j["device"] for j in qmp.execute(sock, "query-block-jobs")}
    for target in targets:
        if mirror(target) not in nodes:
            qmp.execute(
                sock,
                "blockdev-add",
                {
                    "driver": "nbd",
                    "node-name": mirror(target),
                    "server": {"type": "inet", "host": host, "port": str(port)},
                    "export": node(target),
                },
            )
        if mirror(target) not in jobs:
            qmp.execute(
                sock,
                "blockdev-mirror",
                {
                    "job-id": mirror(target),
                    "device": node(target),
                    "target": mirror(target),
                    "sync": "top" if incremental else "full",
                    "auto-dismiss": False,
                    "speed": speed,
                },
            )


def mirror_state(sock: Path, targets: list[str]) -> tuple[bool, int, int, str | None]:
    """(every mirror ready, bytes to copy, bytes copied, the first error)."""
    jobs = {j["device"]: j for j in qmp.execute(sock, "query-block-jobs")}
    ready, total, done = True, 0, 0
    for target in targets:
        job = jobs.get(mirror(target))
        if job is None:
            return False, total, done, f"the mirror of disk {target} is gone"
        if job.get("error") or (job.get("status") == "concluded" and not job.get("ready")):
            return False, total, done, f"mirror of disk {target}: {job.get('error', 'failed')}"
        ready = ready and bool(job.get("ready"))
        total += int(job.get("len", 0))
        done += int(job.get("offset", 0))
    return ready, total, done, None


def complete_mirrors(sock: Path, targets: list[str]) -> bool:
    """At the switch-over (guest stopped): end each ready mirror so that the destination's copy
    is consistent (``block-job-cancel`` without force), then dismiss the jobs and delete the
    NBD nodes. True when all concluded; False to be called again."""
    jobs = {j["id"]: j for j in qmp.execute(sock, "query-jobs")}
    for target in targets:
        job = jobs.get(mirror(target))
        if job and job["status"] == "ready":
            qmp.execute(sock, "block-job-cancel", {"device": mirror(target), "force": False})
    deadline = time.monotonic() + CONCLUDE_WAIT
    while time.monotonic() < deadline:
        jobs = {j["id"]: j for j in qmp.execute(sock, "query-jobs")}
        pending = [
            t for t in targets if jobs.get(mirror(t), {}).get("status") not in (None, "concluded")
        ]
        if not pending:
            failed = [t for t in targets if jobs.get(mirror(t), {}).get("error")]
            if failed:
                raise DriverError(f"the mirror of disk {failed[0]} failed at the switch-over")
            remove_mirrors(sock, targets)
            return True
        time.sleep(0.02)
    return False


def cancel_mirrors(sock: Path, targets: list[str]) -> None:
    """On failure or cancel: stop every mirror at once (``force``), dismiss it, delete its
    NBD node. Idempotent; what is already gone is skipped. Nothing (no QMP) without disks."""
    if not targets:
        return
    jobs = {j["id"]: j for j in qmp.execute(sock, "query-jobs")}
    for target in targets:
        job = jobs.get(mirror(target))
        if job and job["status"] not in ("concluded", "null", "aborting"):
            qmp.execute(sock, "block-job-cancel", {"device": mirror(target), "force": True})
    deadline = time.monotonic() + CONCLUDE_WAIT
    while time.monotonic() < deadline:
        jobs = {j["id"]: j for j in qmp.execute(sock, "query-jobs")}
        if all(jobs.get(mirror(t), {}).get("status") in (None, "concluded") for t in targets):
            break
        time.sleep(0.02)
    remove_mirrors(sock, targets)


def remove_mirrors(sock: Path, targets: list[str]) -> None:
    """Dismiss concluded mirror jobs and delete the NBD client nodes that are left (no QMP for
    a migration without disks to copy)."""
    if not targets:
        return
    jobs = {j["id"]: j for j in qmp.execute(sock, "query-jobs")}
    for target in targets:
        if jobs.get(mirror(target), {}).get("status") == "concluded":
            qmp.execute(sock, "job-dismiss", {"id": mirror(target)})
    nodes = {n["node-name"] for n in qmp.execute(sock, "query-named-block-nodes")}
    for target in targets:
        if mirror(target) in nodes:
            qmp.execute(sock, "blockdev-del", {"node-name": mirror(target)})
