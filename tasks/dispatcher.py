"""The dispatcher: starts an accepted migration by negotiating again and sending its first phase.

The registry may have changed since the request was accepted, so the version is chosen here, from
the hosts' registrations at this moment; hosts that turn out to be stale are handled by fallback.
"""

from __future__ import annotations

import logging

from tasks import flow
from tasks.crashpoints import maybe_crash
from tasks.ending import finished
from tasks.errors import Refused
from tasks.negotiation import Wants, negotiate
from tasks.publish import publish_step
from tasks.record import MigrationRecord
from tasks.registry import HostInfo, read_hosts
from tasks.runtime import runtime
from tasks.states import State

log = logging.getLogger(__name__)


def _candidates(
    record: MigrationRecord, source: HostInfo | None, destination: HostInfo | None
) -> list[int]:
    for role, name, info in (
        ("source", record.source, source),
        ("destination", record.destination, destination),
    ):
        if info is None or not info.alive:
            raise Refused("HOST_DOWN", f"{role} host {name!r} is not alive")
    assert source is not None and destination is not None
    wants = Wants.of(record.dname, record.xml, frozenset(record.flags))
    return negotiate(frozenset(source.protocols), frozenset(destination.protocols), wants)


def start_migration(migration_id: str) -> str:
    """Entry point of the dispatcher's start task; idempotent (a second start does nothing)."""
    record = runtime().store.get(migration_id)
    if record is None or record.state != State.PENDING or record.attempt:
        return "ignored"
    (source, destination), inventory = read_hosts(
        runtime().redis, [record.source, record.destination], inventory_of=record.source
    )
    try:
        candidates: list[int] | None = _candidates(record, source, destination)
        error = None
    except Refused as exc:
        candidates, error = None, exc.as_dict()
    state = next((d["state"] for d in inventory or [] if d["name"] == record.domain), None)

    def begin(r: MigrationRecord) -> bool | None:
        if r.state != State.PENDING or r.attempt:
            return None
        if candidates is None:
            r.error = error
            r.move_to(State.FAILED)
            return True
        r.candidates = candidates
        r.exchange["source_state"] = state  # libvirt adds PAUSED for a paused source
        flow.start_attempt(r, candidates[0])
        return True

    started = runtime().store.update(migration_id, begin)
    if started is None:
        return "ignored"
    record = started[0]
    maybe_crash("start:after-cas")
    if record.terminal:
        finished(record)
        return "failed"
    publish_step(record)
    return "started"
