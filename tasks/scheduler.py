"""The scheduler tick: expire, order, admit and release queued migrations.

Queued migrations are held durably in a Redis hash (never as Celery ETA or countdown messages,
which Redis redelivers and duplicates). Any number of ticks may run at once: admission is atomic,
and each record change is a compare-and-set. Dispatchers tick every ``scheduler_interval`` and
again whenever a migration ends and frees a slot.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from broker import keys
from tasks.admission import (
    Candidate,
    Limits,
    admission_order,
    epoch,
    release_slot,
    slot_holders,
    take_slots,
)
from tasks.publish import finished, publish_start
from tasks.record import MigrationRecord
from tasks.runtime import runtime
from tasks.states import State
from tasks.windows import Window, all_open, next_open, parse_window

log = logging.getLogger(__name__)
WAITING_STATES = (State.QUEUED, State.WAITING)


@dataclass
class QueueEntry:
    id: str
    source: str
    destination: str
    bandwidth: int = 0
    priority: int = 0
    created: float = 0.0
    not_before: float = 0.0
    deadline: float = 0.0
    windows: list[str] = field(default_factory=list)
    state: str = State.QUEUED.value

    def candidate(self) -> Candidate:
        return Candidate(
            self.id, self.source, self.destination, self.bandwidth, self.priority, self.created
        )


@dataclass
class Classified:
    due: list[QueueEntry] = field(default_factory=list)
    later: list[QueueEntry] = field(default_factory=list)
    expired: list[tuple[QueueEntry, dict[str, str]]] = field(default_factory=list)


def load_windows(specs: dict[str, dict[str, Any]]) -> dict[str, Window]:
    return {name: parse_window(name, spec) for name, spec in specs.items()}


def _misses_deadline(entry: QueueEntry, windows: list[Window], now: dt.datetime) -> str | None:
    if not entry.deadline:
        return None
    deadline = dt.datetime.fromtimestamp(entry.deadline, dt.UTC)
    start = max(now, dt.datetime.fromtimestamp(entry.not_before, dt.UTC))
    for window in windows:
        if next_open(window, start) >= deadline:
            return (
                f"window {window.name!r} does not open before the deadline {deadline.isoformat()}"
            )
    return None


def classify(entries: list[QueueEntry], windows: dict[str, Window], now: dt.datetime) -> Classified:
    """Pure: which entries may start now, which wait, which can no longer start in time."""
    result = Classified()
    stamp = now.timestamp()
    for entry in entries:
        needed = [windows[n] for n in entry.windows if n in windows]
        if entry.deadline and stamp >= entry.deadline:
            result.expired.append(
                (
                    entry,
                    {
                        "code": "DEADLINE_PASSED",
                        "message": "the migration could not start before its deadline",
                    },
                )
            )
        elif stamp >= entry.not_before and all_open(needed, now):
            result.due.append(entry)
        elif reason := _misses_deadline(entry, needed, now):
            result.expired.append((entry, {"code": "WINDOW_MISSES_DEADLINE", "message": reason}))
        else:
            result.later.append(entry)
    return result


def enqueue(entry: QueueEntry) -> None:
    runtime().redis.hset(keys.queue(), entry.id, json.dumps(entry.__dict__))


def _set_state(
    migration_id: str, new: State, error: dict[str, str] | None = None
) -> MigrationRecord | None:
    def change(r: MigrationRecord) -> bool | None:
        if State(r.state) not in WAITING_STATES:
            return None
        r.move_to(new)
        r.error = error or r.error
        return True

    changed = runtime().store.update(migration_id, change)
    return changed[0] if changed else None


def start_admitted(migration_id: str) -> bool:
    """Move an admitted migration to pending and hand it to a dispatcher."""
    record = _set_state(migration_id, State.PENDING)
    if record is None:
        release_slot(runtime().redis, migration_id)  # cancelled meanwhile
        return False
    from tasks.metrics import ADMISSION_WAIT  # noqa: PLC0415

    ADMISSION_WAIT.observe(max(0.0, time.time() - epoch(record.created)))
    publish_start(migration_id)
    return True


def _mark(entries: list[QueueEntry], state: State) -> None:
    for entry in entries:
        if entry.state != state and _set_state(entry.id, state):
            entry.state = state.value
            enqueue(entry)


def reclaim_slots() -> int:
    """Free slots whose migration ended or vanished (a crashed dispatcher's, for example)."""
    client, store = runtime().redis, runtime().store
    freed = 0
    for migration_id in slot_holders(client):
        record = store.get(migration_id)
        if record is None or record.terminal:
            freed += release_slot(client, migration_id)
    return freed


def tick_lock(milliseconds: int = 100) -> bool:
    """Debounce: True for one caller per ``milliseconds`` (ticks are safe to overlap anyway)."""
    return bool(runtime().redis.set(keys.tick_lock(), "1", nx=True, px=milliseconds))


def run_ticker(stop: Any) -> None:
    """Tick (and sweep) every ``scheduler_interval`` until ``stop`` (a threading.Event) is set."""
    from tasks.sweeper import sweep, sweep_lock  # noqa: PLC0415 (the sweeper builds on this module)

    interval = runtime().settings.scheduler_interval
    while not stop.wait(interval):
        try:
            tick()
            if sweep_lock(interval):
                sweep()
        except Exception:  # a broker blip: the next round retries
            log.warning("scheduler round failed", exc_info=True)


def tick(now: dt.datetime | None = None) -> dict[str, int]:
    rt = runtime()
    now = now or dt.datetime.now(dt.UTC)
    reclaimed = reclaim_slots()
    raw = rt.redis.hvals(keys.queue())
    entries = [QueueEntry(**json.loads(v)) for v in raw]
    split = classify(entries, load_windows(rt.settings.windows), now)
    for entry, error in split.expired:
        record = _set_state(entry.id, State.EXPIRED, error)
        rt.redis.hdel(keys.queue(), entry.id)
        if record is not None:
            finished(record)
    ordered = admission_order(
        [e.candidate() for e in split.due], now.timestamp(), rt.settings.ageing_seconds
    )
    admitted = take_slots(rt.redis, ordered, Limits.of(rt.settings))
    started = sum(start_admitted(i) for i in admitted)
    admitted_ids = set(admitted)
    _mark([e for e in split.due if e.id not in admitted_ids], State.WAITING)
    _mark(split.later, State.QUEUED)
    return {
        "queued": len(split.later),
        "waiting": len(split.due) - len(admitted),
        "started": started,
        "expired": len(split.expired),
        "reclaimed": reclaimed,
    }
