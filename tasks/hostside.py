"""What a host worker binds before it consumes its queue: its name, driver and protocols."""

from __future__ import annotations

from dataclasses import dataclass

from tasks import flow
from tasks.flags import dest_flags
from tasks.protocol import SIDE, SOURCE, Phase
from tasks.record import MigrationRecord
from tasks.registry import publish_inventory
from tasks.runtime import runtime
from workers.drivers.base import Driver, MigrationJob


@dataclass(frozen=True)
class HostContext:
    host: str
    driver: Driver
    protocols: frozenset[int]

    def publish_inventory(self) -> None:
        domains = [d.as_dict() for d in self.driver.list_domains()]
        publish_inventory(runtime().redis, self.host, domains)


_context: HostContext | None = None


def bind_host(context: HostContext) -> None:
    global _context  # noqa: PLW0603 (one host per worker process, bound once at start)
    _context = context


def current_host() -> HostContext:
    if _context is None:
        raise RuntimeError("this process is not a host worker (no host bound)")
    return _context


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
    )
