"""What a host worker binds before it consumes its queue: its name, driver and protocols."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field

from broker.queues import host_queue
from tasks import flow
from tasks.flags import dest_flags
from tasks.protocol import SIDE, SOURCE, Phase
from tasks.publish import publish_poll_now
from tasks.record import MigrationRecord
from tasks.registry import publish_inventory
from tasks.runtime import runtime
from workers.drivers.base import Driver, DriverError, MigrationJob


@dataclass(frozen=True)
class HostContext:
    host: str
    driver: Driver
    protocols: frozenset[int]
    _published: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def publish_inventory(self, always: bool = False) -> None:
        """Write what the host runs to the registry; after a phase, only when it changed. A
        hypervisor that does not answer (libvirtd restarting) leaves the last list in place."""
        with self._lock:  # one writer at a time, so an older list never overwrites a newer one
            try:
                domains = [d.as_dict() for d in self.driver.list_domains()]
            except DriverError as exc:
                log.warning("inventory of %s not refreshed: %s", self.host, exc)
                return
            encoded = json.dumps(domains, sort_keys=True)
            if always or self._published.get("domains") != encoded:
                publish_inventory(runtime().redis, self.host, domains)
                self._published["domains"] = encoded


log = logging.getLogger(__name__)
_contexts: dict[str, HostContext] = {}  # by queue name; bound once when the worker starts


def bind_host(context: HostContext) -> None:
    _contexts[host_queue(context.host)] = context
    context.driver.watch_transfers(lambda migration_id: poll_now(context.host, migration_id))


def poll_now(host: str, migration_id: str) -> None:
    """The driver saw a transfer end: poll it now rather than at the next interval."""
    record = runtime().store.get(migration_id)
    if record is not None:
        publish_poll_now(record, host)


def refresh_watched_inventories() -> None:
    """Publish the inventory of every bound host whose domains change outside vmigrate, when
    it changed (called with each heartbeat)."""
    for context in list(_contexts.values()):
        if context.driver.CHANGES_OUTSIDE:
            context.publish_inventory()


def current_host(queue: str | None = None) -> HostContext:
    """The host a message was delivered for: by its queue when this process serves several."""
    if queue in _contexts:
        return _contexts[queue]
    if len(_contexts) == 1 and not queue:
        return next(iter(_contexts.values()))
    if not _contexts:
        raise RuntimeError("this process is not a host worker (no host bound)")
    raise RuntimeError(f"this worker serves no host on queue {queue!r}")


def job_for(record: MigrationRecord, phase: Phase) -> MigrationJob:
    """The driver's view of the migration, with the flags that side may see."""
    assert record.protocol is not None
    flags = frozenset(record.flags)
    if SIDE[phase] != SOURCE:
        flags = dest_flags(flags)
        if flow.dest_paused(record):
            flags |= {"paused"}
    return MigrationJob(
        migration_id=record.id,
        version=record.protocol,
        domain=record.domain,
        source=record.source,
        destination=record.destination,
        dname=record.dname,
        flags=flags,
        bandwidth_mibps=record.bandwidth,
        migrate_disks=tuple(record.migrate_disks),
    )
