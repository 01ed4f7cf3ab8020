"""The scheduler tick: expire, order, admit and release queued migrations.

What is due is decided by tasks/release_rules.py, the queue is kept by tasks/queue_store.py, and
tasks/ticker.py runs ticks. Any number of ticks may run at once: admission is atomic, and each
record change is a compare-and-set.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from broker import keys
from broker.connection import text
from tasks.admission import (
    Limits,
    admission_order,
    release_slot,
    slot_holders,
    take_slots,
)
from tasks.ending import finished
from tasks.metrics import ADMISSION_WAIT
from tasks.publish import publish_start
from tasks.queue_store import PAGE, dequeue, enqueue, queue_page
from tasks.record import MigrationRecord, epoch
from tasks.release_rules import QueueEntry, classify, line_open, load_windows
from tasks.runtime import Runtime, runtime
from tasks.states import State

log = logging.getLogger(__name__)
WAITING_STATES = (State.QUEUED, State.WAITING)


MARK_PER_TICK = 50  # queued <-> waiting label changes per tick; the rest follow on later ticks


def _set_state(
    rt: Runtime, migration_id: str, new: State, error: dict[str, str] | None = None
) -> MigrationRecord | None:
    def change(r: MigrationRecord) -> bool | None:
        if State(r.state) not in WAITING_STATES:
            return None
        r.move_to(new)
        r.error = error or r.error
        return True

    changed = rt.store.update(migration_id, change)
    return changed[0] if changed else None


def start_admitted(rt: Runtime, migration_id: str) -> bool:
    """Move an admitted migration to pending and hand it to a dispatcher."""
    record = _set_state(rt, migration_id, State.PENDING)
    if record is None:
        release_slot(rt.redis, migration_id)  # cancelled meanwhile
        return False
    ADMISSION_WAIT.observe(max(0.0, time.time() - epoch(record.created)))
    publish_start(migration_id, rt)
    return True


def _mark(rt: Runtime, entries: list[QueueEntry], state: State, budget: int = MARK_PER_TICK) -> int:
    """Show ``state`` on up to ``budget`` records that do not show it yet, in a few round trips
    (a record changed meanwhile keeps its label until a later tick); returns what is left."""
    chosen = [e for e in entries if e.state != state][:budget]

    def change(r: MigrationRecord) -> bool:
        if State(r.state) not in WAITING_STATES or r.state == state:
            return False
        r.move_to(state)
        return True

    changed = {r.id for r in rt.store.update_many([e.id for e in chosen], change)}
    marked = [e for e in chosen if e.id in changed]
    for entry in marked:
        entry.state = state.value
    enqueue(rt.redis, rt.settings.ageing_seconds, *marked)
    return budget - len(chosen)


SLOT_GRACE = 60.0  # seconds a slot may exist before its record does (submission writes it next)


def reclaim_slots(rt: Runtime) -> int:
    """Free slots whose migration ended or vanished (a crashed submitter's, for example)."""
    holders = slot_holders(rt.redis)
    ids = list(holders)
    found = rt.store.get_raw_many(ids)
    freed = 0
    for migration_id, raw in zip(ids, found, strict=True):
        if raw is None:
            vanished = (
                time.time() - float(str(holders[migration_id].get("created", 0))) > SLOT_GRACE
            )
            freed += vanished and release_slot(rt.redis, migration_id)
        elif MigrationRecord.from_json(text(raw)).terminal:
            freed += release_slot(rt.redis, migration_id)
    return freed


def tick(now: dt.datetime | None = None, rt: Runtime | None = None) -> dict[str, int]:
    """Admit what fits, reading each line a page at a time from its front, and only as deep as
    needed: a tick stops once the fleet is full, the lines end, or ``scheduler_scan`` is read.
    ``rt``: the store, client and settings to tick with (default: this process's)."""
    rt = rt or runtime()
    now = now or dt.datetime.now(dt.UTC)
    windows = load_windows(rt.settings.windows)
    counts = {"reclaimed": reclaim_slots(rt), "started": 0, "expired": 0, "scanned": 0}
    lines = sorted(text(line) for line in rt.redis.smembers(keys.queue_lines()))
    open_lines = [line for line in lines if line_open(line, windows, now)]
    budget, first = MARK_PER_TICK, 0
    while True:
        entries, more = queue_page(rt.redis, lines if first == 0 else open_lines, first, now)
        split = classify(entries, windows, now)
        counts["scanned"] += len(entries)
        counts["expired"] += _expire(rt, split.expired)
        admitted = _admit(rt, split.due, now)
        counts["started"] += sum(start_admitted(rt, i) for i in admitted)
        taken = set(admitted)
        budget = _mark(rt, [e for e in split.due if e.id not in taken], State.WAITING, budget)
        budget = _mark(rt, split.later, State.QUEUED, budget)
        first += PAGE
        if not more or first >= rt.settings.scheduler_scan or _fleet_full(rt):
            return counts  # closed lines are read to their first page only (labels, early expiry)


def _expire(rt: Runtime, expired: list[tuple[QueueEntry, dict[str, str]]]) -> int:
    ended = [_set_state(rt, entry.id, State.EXPIRED, error) for entry, error in expired]
    dequeue(rt.redis, [entry.id for entry, _ in expired])
    for record in ended:
        if record is not None:
            finished(record, rt)
    return len(expired)


def _admit(rt: Runtime, due: list[QueueEntry], now: dt.datetime) -> list[str]:
    ordered = admission_order(
        [e.candidate() for e in due], now.timestamp(), rt.settings.ageing_seconds
    )
    admitted = take_slots(rt.redis, ordered, Limits.of(rt.settings)) if ordered else []
    dequeue(rt.redis, admitted)
    return admitted


def _fleet_full(rt: Runtime) -> bool:
    return bool(rt.redis.hlen(keys.slots()) >= rt.settings.fleet)
