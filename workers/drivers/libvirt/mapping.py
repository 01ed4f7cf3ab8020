"""What vmigrate's migration means in libvirt's terms, as pure functions (no libvirt needed).

Flags and parameters of ``virDomainMigrateToURI3`` by their libvirt names (resolved against the
``libvirt`` module by the caller), the domain state, and progress read from ``jobStats``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workers.drivers.base import DomainState, MigrationJob
from workers.drivers.flags import COPY_STORAGE, Flag

#: vmigrate's flag -> libvirt's VIR_MIGRATE_* flag.
FLAG_NAMES: dict[Flag, str] = {
    Flag.LIVE: "VIR_MIGRATE_LIVE",
    Flag.PAUSED: "VIR_MIGRATE_PAUSED",
    Flag.PERSIST: "VIR_MIGRATE_PERSIST_DEST",
    Flag.UNDEFINE_SOURCE: "VIR_MIGRATE_UNDEFINE_SOURCE",
    Flag.OFFLINE: "VIR_MIGRATE_OFFLINE",
    Flag.AUTO_CONVERGE: "VIR_MIGRATE_AUTO_CONVERGE",
    Flag.ABORT_ON_ERROR: "VIR_MIGRATE_ABORT_ON_ERROR",
    Flag.POSTCOPY: "VIR_MIGRATE_POSTCOPY",
    Flag.COPY_STORAGE_ALL: "VIR_MIGRATE_NON_SHARED_DISK",
    Flag.COPY_STORAGE_INC: "VIR_MIGRATE_NON_SHARED_INC",
}
#: Always set: the source daemon runs the protocol against the destination daemon.
ALWAYS = ("VIR_MIGRATE_PEER2PEER",)

#: libvirt's virDomainState numbers -> vmigrate's three states. Blocked counts as running,
#: suspended to memory (pmsuspended) as paused; crashed, shut down and shutting down as off.
STATES: dict[int, DomainState] = {
    0: "shutoff",  # NOSTATE
    1: "running",  # RUNNING
    2: "running",  # BLOCKED
    3: "paused",  # PAUSED
    4: "running",  # SHUTDOWN: shutting down, still running
    5: "shutoff",  # SHUTOFF
    6: "shutoff",  # CRASHED
    7: "paused",  # PMSUSPENDED
}

JOB_NONE = 0  # virDomainJobType: no job


def flag_names(flags: frozenset[str]) -> list[str]:
    """The libvirt flags of a migration with vmigrate's ``flags``, sorted."""
    names = {FLAG_NAMES[Flag(f)] for f in flags if f in FLAG_NAMES}
    return sorted(names | set(ALWAYS))


def migration_params(job: MigrationJob, uri: str, dest_xml: str | None) -> dict[str, Any]:
    """``migrateToURI3``'s typed parameters, by libvirt's parameter names."""
    params: dict[str, Any] = {"migrate_uri": uri}
    if job.dname:
        params["destination_name"] = job.dname
    if dest_xml is not None:
        params["destination_xml"] = dest_xml
        if Flag.PERSIST in job.flags:
            params["persistent_xml"] = dest_xml
    if job.bandwidth_mibps:
        params["bandwidth"] = int(job.bandwidth_mibps)  # MiB/s, as libvirt's parameter
    if job.migrate_disks and job.flags & COPY_STORAGE:
        params["migrate_disks"] = list(job.migrate_disks)
    return params


def state_of(code: int) -> DomainState:
    return STATES.get(code, "shutoff")


def progress(stats: Mapping[str, Any]) -> dict[str, float]:
    """The record's progress from libvirt's ``jobStats`` of a running migration."""
    total = float(stats.get("memory_total", 0))
    remaining = float(stats.get("memory_remaining", total))
    page = float(stats.get("memory_page_size", 4096))
    return {
        "memory_total": total,
        "memory_processed": float(stats.get("memory_processed", 0)),
        "memory_remaining": remaining,
        "memory_iteration": float(stats.get("memory_iteration", 0)),
        "memory_dirty_rate": float(stats.get("memory_dirty_rate", 0)) * page,
        "data_total": float(stats.get("data_total", 0)),
        "data_processed": float(stats.get("data_processed", 0)),
        "data_remaining": float(stats.get("data_remaining", 0)),
        **{
            key: float(stats[key])
            for key in ("disk_total", "disk_processed", "disk_remaining")
            if key in stats
        },
        "expected_downtime_ms": float(stats.get("downtime", 0)),
        "percent": max(0.0, min(99.9, 100.0 * (1 - remaining / total))) if total else 0.0,
    }


def completed_stats(stats: Mapping[str, Any]) -> dict[str, int]:
    """What a completed migration reports (downtime, bytes sent, iterations), from the completed
    job's statistics; missing values are 0."""
    return {
        "downtime_ms": int(stats.get("downtime", 0)),
        "transferred": int(stats.get("data_processed", stats.get("memory_processed", 0))),
        "iterations": int(stats.get("memory_iteration", 0)),
        **{key: int(stats[key]) for key in ("disk_total", "disk_processed") if key in stats},
    }


def memory_shortfall(need_kib: int, free_kib: int, pending_kib: int) -> int:
    """KiB missing for a guest of ``need_kib`` on a host with ``free_kib`` free, of which
    ``pending_kib`` is promised to migrations already prepared; 0 when it fits."""
    return max(0, need_kib - (free_kib - pending_kib))


def timed_out(started_at: float, now: float, memory_kib: int, per_gib: float) -> bool:
    """The completion timeout: ``per_gib`` seconds per GiB of guest memory, at least one GiB."""
    return now - started_at >= per_gib * max(1.0, memory_kib / 1024**2)
