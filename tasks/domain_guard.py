"""One migration per domain at a time, across the whole fleet: a Redis key per (source, domain)
holding the id of the migration that runs for it. Taken at submission, released when that
migration ends (only by it)."""

from __future__ import annotations

from broker import keys
from broker.connection import Client
from tasks.errors import Refused
from tasks.lua import lua_script
from tasks.record import MigrationRecord

_RELEASE = lua_script("release_guard")  # KEYS and ARGV: see release_guard.lua


def take(client: Client, record: MigrationRecord) -> None:
    """Hold the domain for ``record``, or refuse: another migration runs for it."""
    guard = keys.active_domain(record.source, record.domain)
    if not client.set(guard, record.id, nx=True):
        holder = client.get(guard) or "unknown"
        if holder == record.id:  # this very write, sent again after its answer was lost
            return
        raise Refused(
            "MIGRATION_IN_PROGRESS",
            f"another migration ({holder!s}) is already running for domain {record.domain!r} "
            f"on {record.source!r}",
        )


def release(client: Client, record: MigrationRecord) -> None:
    """Let the next migration of the domain in, if ``record`` still holds it."""
    guard = keys.active_domain(record.source, record.domain)
    client.eval(_RELEASE, 1, guard, record.id)  # type: ignore[no-untyped-call]
