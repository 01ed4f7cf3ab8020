"""Cancelling a migration: at once while it waits, by an orderly rollback while it runs.

A queued, waiting or pending migration ends ``cancelled`` immediately. A running one is marked; the
Perform poll aborts the transfer (the source resumes), and at the next phase boundary the flow runs
the compensating phases for that point. Once the destination owns the VM it is too late: the
migration completes, with a warning saying so.
"""

from __future__ import annotations

from tasks.ending import finished
from tasks.errors import VMigrateError
from tasks.flow import CANCELLED_ERROR
from tasks.queue_store import dequeue
from tasks.record import MigrationRecord
from tasks.runtime import runtime
from tasks.states import State

AT_ONCE = (State.QUEUED, State.WAITING, State.PENDING)


def request_cancel(migration_id: str) -> MigrationRecord:
    """Cancel ``migration_id``; returns the record as it is right after the request."""

    def change(r: MigrationRecord) -> bool | None:
        if r.terminal or r.cancel_requested:
            return None
        r.cancel_requested = True
        if State(r.state) in AT_ONCE:
            r.error = CANCELLED_ERROR
            r.move_to(State.CANCELLED)
            r.step = None
        elif r.vm_host == r.destination:
            r.warnings.append("cancel requested after the destination took over the VM: too late")
        return True

    store = runtime().store
    changed = store.update(migration_id, change)
    if changed is None:
        record = store.get(migration_id)
        if record is None:
            raise VMigrateError("MIGRATION_UNKNOWN", f"no migration with id {migration_id!r}")
        return record
    record = changed[0]
    if record.terminal:
        dequeue(runtime().redis, [record.id])
        finished(record)
    return record
