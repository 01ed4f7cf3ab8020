"""Accepting a migration request: every check that can refuse it runs here, before any host acts.

The CLI, the Celery entry point and (later) the REST API all call ``submit``. A refused request
raises ``Refused`` with a stable code and touches neither host.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from broker.callback_urls import BadURL, allowed
from broker.connection import Client, lost_the_broker
from broker.queues import InvalidHostName, check_host_name
from broker.replication import held_by_a_replica
from broker.settings import Settings
from tasks import domain_guard
from tasks.admission import Limits, release_slot, take_slots
from tasks.bounds import (
    MAX_BANDWIDTH_MIBPS,
    MAX_ID_LENGTH,
    MAX_MIGRATE_DISKS,
    MAX_PRIORITY,
    MIN_PRIORITY,
    valid_disk_target,
    valid_id,
)
from tasks.errors import Refused
from tasks.flags import validate_flags
from tasks.negotiation import Wants, negotiate
from tasks.placement import drivers_compatible
from tasks.publish import publish_start
from tasks.queue_store import queue_write
from tasks.record import MigrationRecord, new_migration_id
from tasks.registry import HostInfo, read_hosts
from tasks.release_rules import QueueEntry, classify, load_windows
from tasks.runtime import Runtime, runtime
from tasks.scheduler import tick
from tasks.states import State
from workers import domxml, safexml
from workers.disks import DiskSelectionError, check_inventory_disks
from workers.drivers.base import OFFLINE
from workers.drivers.flags import COPY_STORAGE

log = logging.getLogger(__name__)


@dataclass
class MigrationRequest:
    domain: str
    source: str
    destination: str
    dname: str | None = None
    xml: str | None = None
    flags: list[str] = field(default_factory=list)
    bandwidth: int | None = None
    migrate_disks: list[str] | None = None
    id: str | None = None
    priority: int = 0
    window: str | None = None
    not_before: str | None = None
    deadline: str | None = None
    #: A webhook URL that receives each state change (it must match ``webhook_allow``).
    callback: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MigrationRequest:
        """Build a request from JSON (the Celery entry point, the API); unknown keys are refused."""
        if not isinstance(data, dict):
            raise Refused("INVALID_REQUEST", "a migration request must be a JSON object")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise Refused("INVALID_REQUEST", f"unknown field(s) in request: {', '.join(unknown)}")
        for name in ("domain", "source", "destination"):
            if not isinstance(data.get(name), str):
                raise Refused("INVALID_REQUEST", f"field {name!r} is required and must be a string")
        return cls(**data)


def _check_names(request: MigrationRequest) -> None:
    try:
        domxml.check_name(request.domain)
        if request.dname is not None:
            domxml.check_name(request.dname, "new name (--dname)")
        check_host_name(request.source)
        check_host_name(request.destination)
    except (domxml.InvalidDomain, InvalidHostName) as exc:
        raise Refused("INVALID_NAME", str(exc)) from None
    if request.source == request.destination:
        raise Refused("SAME_HOST", "source and destination are the same host")
    if request.id is not None and not valid_id(request.id):
        raise Refused(
            "INVALID_ID", f"a migration id is 1-{MAX_ID_LENGTH} letters, digits, '-' or '_'"
        )


def _check_options(request: MigrationRequest, max_xml_bytes: int) -> frozenset[str]:
    if not isinstance(request.flags, list) or not all(isinstance(f, str) for f in request.flags):
        raise Refused("INVALID_REQUEST", "flags must be a list of flag names")
    flags = validate_flags(frozenset(request.flags))
    bw = request.bandwidth
    if bw is not None and (
        isinstance(bw, bool) or not isinstance(bw, int) or not 0 < bw <= MAX_BANDWIDTH_MIBPS
    ):
        raise Refused(
            "INVALID_BANDWIDTH", f"bandwidth must be 1-{MAX_BANDWIDTH_MIBPS} MiB/s, not {bw!r}"
        )
    _check_migrate_disks(request.migrate_disks, flags)
    if request.xml is not None:
        try:
            parsed = domxml.parse_domain(request.xml, max_xml_bytes)
        except (domxml.InvalidDomain, safexml.XMLRejected) as exc:
            raise Refused("INVALID_XML", f"destination XML (--xml): {exc}") from None
        if parsed.name != request.domain:
            raise Refused(
                "DEST_XML_RENAME",
                "the destination XML must keep the domain's name; use --dname to rename",
            )
    return flags


def _check_callback(url: str | None, allow: tuple[str, ...]) -> None:
    """A callback must be a plain http(s) URL under an entry of the allow-list."""
    if url is None:
        return
    try:
        if allowed(url, allow):
            return
    except BadURL as exc:
        raise Refused("INVALID_CALLBACK", str(exc)) from None
    raise Refused(
        "CALLBACK_NOT_ALLOWED",
        f"callback {url!r} is not under any URL of the fleet's webhook allow-list "
        "([webhooks] allow)",
    )


def _check_migrate_disks(named: list[str] | None, flags: frozenset[str]) -> None:
    if named is None:
        return
    if not isinstance(named, list) or not all(valid_disk_target(t) for t in named):
        raise Refused(
            "INVALID_REQUEST",
            "migrate_disks must be a list of disk targets (vda, sdb: lower-case letters and "
            "digits)",
        )
    if len(named) > MAX_MIGRATE_DISKS or len(set(named)) != len(named):
        raise Refused(
            "INVALID_REQUEST", f"migrate_disks lists at most {MAX_MIGRATE_DISKS} distinct disks"
        )
    if named and not flags & COPY_STORAGE:
        raise Refused(
            "INVALID_FLAGS", "--migrate-disks needs --copy-storage-all or --copy-storage-inc"
        )


def parse_time(value: str | None, what: str) -> float:
    """ISO 8601 with an offset (``2026-11-27T22:00:00+01:00``) to epoch seconds; 0 when absent."""
    if value is None:
        return 0.0
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise Refused("INVALID_TIME", f"{what} {value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise Refused("INVALID_TIME", f"{what} {value!r} needs an offset, e.g. +01:00 or Z")
    return parsed.timestamp()


def _schedule(request: MigrationRequest, settings: Settings) -> QueueEntry:
    pri = request.priority
    if isinstance(pri, bool) or not isinstance(pri, int) or not MIN_PRIORITY <= pri <= MAX_PRIORITY:
        raise Refused(
            "INVALID_PRIORITY",
            f"priority must be an integer from {MIN_PRIORITY} to {MAX_PRIORITY}, not {pri!r}",
        )
    not_before = parse_time(request.not_before, "--not-before")
    deadline = parse_time(request.deadline, "--deadline")
    if deadline and deadline <= max(not_before, time.time()):
        raise Refused("DEADLINE_PASSED", "the deadline is already past (or before --not-before)")
    if request.window is not None and request.window not in settings.windows:
        known = ", ".join(sorted(settings.windows)) or "none are configured"
        raise Refused("UNKNOWN_WINDOW", f"no window named {request.window!r} ({known})")
    windows = [request.window] if request.window else []
    for host in (request.source, request.destination):
        assigned = settings.host_windows.get(host)
        if assigned and assigned not in windows:
            windows.append(assigned)
    return QueueEntry(
        id="",
        source=request.source,
        destination=request.destination,
        bandwidth=request.bandwidth or 0,
        priority=pri,
        created=time.time(),
        not_before=not_before,
        deadline=deadline,
        windows=windows,
    )


def _hosts(
    client: Client, request: MigrationRequest
) -> tuple[HostInfo, HostInfo, list[dict[str, Any]]]:
    """Both hosts' registrations and the source's inventory, read in one round trip."""
    (source, destination), inventory = read_hosts(
        client, [request.source, request.destination], inventory_of=request.source
    )
    return (
        _check_host(source, request.source, "source"),
        _check_host(destination, request.destination, "destination"),
        inventory or [],
    )


def _check_host(info: HostInfo | None, name: str, role: str) -> HostInfo:
    if info is None:
        raise Refused("HOST_UNKNOWN", f"{role} host {name!r} is not registered")
    if not info.alive:
        raise Refused("HOST_DOWN", f"{role} host {name!r} is not alive (no recent heartbeat)")
    if role == "destination" and info.drained:
        raise Refused(
            "HOST_DRAINING", f"destination host {name!r} is drained: nothing new goes there"
        )
    return info


def _check_drivers(source: HostInfo, destination: HostInfo) -> None:
    if not drivers_compatible(source.driver, destination.driver):
        raise Refused(
            "DRIVER_MISMATCH",
            f"source host {source.name!r} runs the {source.driver} driver and destination "
            f"{destination.name!r} the {destination.driver} driver: a VM moves only between "
            "hosts of one driver",
        )


def _check_storage(source: HostInfo, destination: HostInfo, flags: frozenset[str]) -> None:
    if not flags & COPY_STORAGE:
        return
    for host in (source, destination):
        if not host.copy_storage:
            raise Refused(
                "STORAGE_MIGRATION_UNSUPPORTED",
                f"host {host.name!r} ({host.driver} driver, vmigrate {host.version}) cannot "
                "copy disks: storage migration needs the qemu or libvirt driver of vmigrate "
                "0.4 or later on both hosts",
            )


def _check_domain(
    request: MigrationRequest, flags: frozenset[str], inventory: list[dict[str, Any]]
) -> None:
    found = next((d for d in inventory if d["name"] == request.domain), None)
    if found is None:
        raise Refused(
            "DOMAIN_NOT_FOUND", f"host {request.source!r} has no domain {request.domain!r}"
        )
    if OFFLINE not in flags and found["state"] == "shutoff":
        raise Refused(
            "DOMAIN_NOT_RUNNING",
            f"domain {request.domain!r} is shut off on {request.source!r}; "
            "use --offline --persist to move its definition",
        )
    if flags & COPY_STORAGE and "disks" in found:  # published by 0.4 and later
        try:
            check_inventory_disks(found["disks"], request.migrate_disks or [])
        except DiskSelectionError as exc:
            raise Refused(exc.code, str(exc)) from None


def submit(request: MigrationRequest, rt: Runtime | None = None) -> MigrationRecord:
    """Validate ``request``, record it and hand it to a dispatcher. Raises ``Refused``.
    ``rt``: the store, client and settings to submit with (default: this process's)."""
    rt = rt or runtime()
    _check_names(request)
    flags = _check_options(request, rt.settings.max_xml_bytes)
    _check_callback(request.callback, rt.settings.webhook_allow)
    entry = _schedule(request, rt.settings)
    source, destination, inventory = _hosts(rt.redis, request)
    _check_drivers(source, destination)
    _check_storage(source, destination, flags)
    wants = Wants.of(request.dname, request.xml, flags)
    candidates = negotiate(frozenset(source.protocols), frozenset(destination.protocols), wants)
    _check_domain(request, flags, inventory)
    record = MigrationRecord(
        id=request.id or new_migration_id(),
        domain=request.domain,
        source=request.source,
        destination=request.destination,
        dname=request.dname,
        flags=sorted(flags),
        bandwidth=request.bandwidth,
        migrate_disks=list(request.migrate_disks or []),
        xml=request.xml,
        candidates=candidates,
        priority=entry.priority,
        window=request.window,
        not_before=request.not_before,
        deadline=request.deadline,
        callback=request.callback,
    )
    entry.id = record.id
    accepted = _admit_or_queue(rt, record, entry)
    if held_by_a_replica(rt.redis, rt.settings.replica_ack_timeout) is False:
        log.warning(
            "migration %s: no Redis replica acknowledged it within %.1f s; a failover now "
            "could lose it",
            record.id,
            rt.settings.replica_ack_timeout,
        )
    return accepted


def _admit_or_queue(rt: Runtime, record: MigrationRecord, entry: QueueEntry) -> MigrationRecord:
    """Store the record: born pending and handed to a dispatcher when nothing waits and a slot
    is free, else queued (for its window or time) or waiting (for a slot)."""
    due = classify([entry], load_windows(rt.settings.windows), dt.datetime.now(dt.UTC)).due
    domain_guard.take(rt.redis, record)
    # A slot whose record never got written (a crash here) is reclaimed by a tick.
    admitted = due and take_slots(rt.redis, [entry.candidate()], Limits.of(rt.settings), True)
    record.state = (State.PENDING if admitted else State.WAITING if due else State.QUEUED).value
    entry.state = record.state
    queued = None if admitted else queue_write(entry, rt.settings.ageing_seconds)
    if not rt.store.create(record, queued):
        if admitted:
            release_slot(rt.redis, record.id)
        domain_guard.release(rt.redis, record)
        raise Refused("DUPLICATE_ID", f"a migration with id {record.id!r} already exists")
    if admitted:
        try:
            publish_start(record.id, rt)
        except Exception as exc:
            if not lost_the_broker(exc):
                raise
            # the record holds it: the sweeper starts it instead
            log.warning(
                "migration %s: its start message was not sent (%s); it starts within %.0f s",
                record.id,
                exc,
                rt.settings.phase_timeout,
            )
        return record
    if due:
        try:
            tick(rt=rt)  # others wait ahead of it: admit in priority order now, not later
        except Exception as exc:
            if not lost_the_broker(exc):
                raise
            # it is queued: the dispatchers' next tick admits it
            log.warning("migration %s waits for the next tick (%s)", record.id, exc)
    return rt.store.get(record.id) or record


def record_refusal(
    data: Any, refused: Refused, rt: Runtime | None = None
) -> MigrationRecord | None:
    """A request that came through the broker has nobody to hear its refusal: keep it under the
    id the application chose, as a migration that ended ``failed`` with the refusal's code and ran
    nothing. Without a usable id, or when the id is taken, there is nothing to write."""
    if not isinstance(data, dict) or refused.code in ("DUPLICATE_ID", "INVALID_ID"):
        return None
    names = [data.get(k) for k in ("id", "domain", "source", "destination")]
    if not all(isinstance(n, str) and n for n in names):
        return None
    migration_id, domain, source, destination = (str(n) for n in names)
    if not valid_id(migration_id):
        return None
    record = MigrationRecord(
        id=migration_id,
        domain=domain[:256],
        source=source[:256],
        destination=destination[:256],
        state=State.FAILED.value,
        error=refused.as_dict(),
    )
    return record if (rt or runtime()).store.create(record) else None
