"""The sweeper: every phase has a deadline, and a migration never hangs on a lost message.

Looks at every migration that has not ended and acts on its step in flight:

- sent, unanswered for ``phase_timeout``: the message was lost (a broker restart, a crash between
  the record change and the publish): send it again (same fencing token, so at most one runs);
- running for ``phase_timeout``: the host died mid-phase and came back: send it again marked as a
  retry; the host re-runs it, and the driver's phases are idempotent;
- polling with no poll for ``poll_stale_after``: start a new poll;
- its host has had no heartbeat for ``host_dead_after``: the phase fails with ``HOST_DOWN`` and the
  flow rolls back (or forward, past the hand-over), so a dead host never holds a migration forever;
- pending and never started for ``phase_timeout``: hand it to a dispatcher again.
"""

from __future__ import annotations

import logging
import time

from broker import keys
from broker.queues import host_queue
from tasks import flow
from tasks.phases import complete
from tasks.protocol import Phase, Step
from tasks.publish import PHASE_TASK, phase_message, publish_poll, publish_start, send
from tasks.record import MigrationRecord, epoch
from tasks.registry import down_for
from tasks.runtime import runtime
from tasks.states import State

log = logging.getLogger(__name__)


def sweep_lock(seconds: float) -> bool:
    """One sweep per interval in the whole fleet (sweeps are safe to overlap, only wasteful)."""
    return bool(runtime().redis.set(keys.sweep_lock(), "1", nx=True, px=int(seconds * 1000)))


def _touch(migration_id: str, seq: int, poll: int | None = None) -> MigrationRecord | None:
    def change(r: MigrationRecord) -> bool | None:
        if r.step is None or r.step.seq != seq or (poll is not None and r.step.poll != poll):
            return None
        r.step.touched = time.time()
        return True

    touched = runtime().store.update(migration_id, change)
    return touched[0] if touched else None


def _fail_dead_host(record: MigrationRecord, host: str, down: float) -> None:
    assert record.step is not None
    seq = record.step.seq
    outcome = flow.Outcome(
        False,
        error={
            "code": "HOST_DOWN",
            "message": f"host {host} stopped answering (no heartbeat for {down:.0f} s)",
        },
    )

    def open_if_never_started(r: MigrationRecord) -> bool | None:
        if r.step is None or r.step.seq != seq or r.step.status != "sent":
            return None
        flow.open_phase(r, host)
        return True

    runtime().store.update(record.id, open_if_never_started)
    complete(record.id, seq, outcome)


def _resend(record: MigrationRecord, host: str, retry: bool) -> None:
    assert record.step is not None
    fresh = _touch(record.id, record.step.seq)
    if fresh is None:
        return
    message = {**phase_message(fresh), "retry": retry}
    send(PHASE_TASK, [message], host_queue(host))
    log.warning("re-sent %s of migration %s to %s", record.step.phase, record.id, host)


def _sweep_unstarted(record: MigrationRecord, now: float) -> str:
    age = now - epoch(record.updated)
    if (
        record.state == State.PENDING
        and not record.attempt
        and age > runtime().settings.phase_timeout
    ):
        publish_start(record.id)  # admitted, but the start message was lost
        return "restarted"
    return "idle"


def sweep_one(record: MigrationRecord, now: float) -> str:
    settings = runtime().settings
    if record.terminal:
        return "ended"
    if record.step is None:
        return _sweep_unstarted(record, now)
    step = Step(Phase(record.step.phase), record.step.cancelled)
    host = flow.host_of(record, step)
    down = down_for(runtime().redis, host)
    age = now - record.step.touched
    if down > settings.host_dead_after:
        _fail_dead_host(record, host, down)
        return "host-down"
    if record.step.status == "polling" and age > settings.poll_stale_after and not down:
        fresh = _touch(record.id, record.step.seq, record.step.poll)
        if fresh is not None:
            publish_poll(fresh, host)
        return "poll"
    if record.step.status in ("sent", "running") and age > settings.phase_timeout and not down:
        _resend(record, host, retry=record.step.status == "running")
        return "resent"
    return "ok"


def sweep(now: float | None = None) -> dict[str, int]:
    store = runtime().store
    now = now or time.time()
    counts: dict[str, int] = {}
    for record in store.running():  # queued and waiting ones have no step to watch
        outcome = sweep_one(record, now)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts
