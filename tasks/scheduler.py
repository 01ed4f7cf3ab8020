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
from broker.connection import text
from tasks.admission import (
    Candidate,
    Limits,
    admission_order,
    line_score,
    release_slot,
    slot_holders,
    take_slots,
)
from tasks.ending import finished
from tasks.publish import publish_start
from tasks.record import MigrationRecord, epoch
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


MARK_PER_TICK = 50  # queued <-> waiting label changes per tick; the rest follow on later ticks


def line_of(entry: QueueEntry) -> str:
    return "|".join(sorted(entry.windows)) or "-"


def enqueue(*entries: QueueEntry) -> None:
    """Store (or rewrite) queued migrations and their places in their lines, in one round trip."""
    ageing = runtime().settings.ageing_seconds
    with runtime().redis.pipeline() as pipe:
        for entry in entries:
            pipe.hset(keys.queue(), entry.id, json.dumps(entry.__dict__))
            pipe.zadd(
                keys.queue_line(line_of(entry)), {entry.id: line_score(entry.candidate(), ageing)}
            )
            pipe.sadd(keys.queue_lines(), line_of(entry))
            if entry.deadline:
                pipe.zadd(keys.queue_deadlines(), {entry.id: entry.deadline})
        pipe.execute()


def dequeue(ids: list[str]) -> None:
    """Forget queued migrations (admitted, expired, cancelled or vanished), wherever they are."""
    if not ids:
        return
    client = runtime().redis
    lines = [text(line) for line in client.smembers(keys.queue_lines())]
    with client.pipeline() as pipe:
        pipe.hdel(keys.queue(), *ids)
        for line in lines:
            pipe.zrem(keys.queue_line(line), *ids)
        pipe.zrem(keys.queue_deadlines(), *ids)
        pipe.execute()


PAGE = 64  # entries a tick reads from each line at a time


def _line_open(line: str, windows: dict[str, Window], now: dt.datetime) -> bool:
    needed = [windows[n] for n in line.split("|") if n in windows] if line != "-" else []
    return all_open(needed, now)


def queue_page(lines: list[str], first: int, now: dt.datetime) -> tuple[list[QueueEntry], bool]:
    """Entries ``first`` to ``first + PAGE`` of each line (and, on the first page, whatever
    reached its deadline), and whether any line has more behind them."""
    client = runtime().redis
    with client.pipeline(transaction=False) as pipe:
        for line in lines:
            pipe.zrange(keys.queue_line(line), first, first + PAGE - 1)
        if first == 0:
            pipe.zrangebyscore(keys.queue_deadlines(), "-inf", now.timestamp(), start=0, num=PAGE)
        fronts = pipe.execute()
    more = any(len(front) == PAGE for front in fronts[: len(lines)])
    ids = list(dict.fromkeys(text(i) for front in fronts for i in front))
    found = client.hmget(keys.queue(), ids) if ids else []
    vanished = [i for i, raw in zip(ids, found, strict=True) if raw is None]
    if vanished:
        dequeue(vanished)
    return [QueueEntry(**json.loads(raw)) for raw in found if raw is not None], more


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


def _mark(entries: list[QueueEntry], state: State, budget: int = MARK_PER_TICK) -> int:
    """Show ``state`` on up to ``budget`` records that do not show it yet, in a few round trips
    (a record changed meanwhile keeps its label until a later tick); returns what is left."""
    chosen = [e for e in entries if e.state != state][:budget]

    def change(r: MigrationRecord) -> bool:
        if State(r.state) not in WAITING_STATES or r.state == state:
            return False
        r.move_to(state)
        return True

    changed = {r.id for r in runtime().store.update_many([e.id for e in chosen], change)}
    marked = [e for e in chosen if e.id in changed]
    for entry in marked:
        entry.state = state.value
    enqueue(*marked)
    return budget - len(chosen)


SLOT_GRACE = 60.0  # seconds a slot may exist before its record does (submission writes it next)


def reclaim_slots() -> int:
    """Free slots whose migration ended or vanished (a crashed submitter's, for example)."""
    client = runtime().redis
    holders = slot_holders(client)
    ids = list(holders)
    found = runtime().store.get_raw_many(ids)
    freed = 0
    for migration_id, raw in zip(ids, found, strict=True):
        if raw is None:
            vanished = (
                time.time() - float(str(holders[migration_id].get("created", 0))) > SLOT_GRACE
            )
            freed += vanished and release_slot(client, migration_id)
        elif MigrationRecord.from_json(text(raw)).terminal:
            freed += release_slot(client, migration_id)
    return freed


TICK_LOCK_MS = 10_000  # only if a ticking process dies with the lock


def tick_soon() -> int:
    """Tick now, or make the tick already running go once more: triggered ticks coalesce, and a
    slot freed while one runs is never left idle until the next periodic tick. Returns the
    number of ticks this call ran."""
    client = runtime().redis
    client.set(keys.tick_again(), "1", px=TICK_LOCK_MS)  # first say so, then try the lock
    ran = 0
    while client.set(keys.tick_lock(), "1", nx=True, px=TICK_LOCK_MS):
        try:
            client.delete(keys.tick_again())
            tick()
            ran += 1
        finally:
            client.delete(keys.tick_lock())  # first release, then look whether asked again
        if not client.exists(keys.tick_again()):
            break
    return ran


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
    """Admit what fits, reading each line a page at a time from its front, and only as deep as
    needed: a tick stops once the fleet is full, the lines end, or ``scheduler_scan`` is read."""
    rt = runtime()
    now = now or dt.datetime.now(dt.UTC)
    windows = load_windows(rt.settings.windows)
    counts = {"reclaimed": reclaim_slots(), "started": 0, "expired": 0, "scanned": 0}
    lines = sorted(text(line) for line in rt.redis.smembers(keys.queue_lines()))
    open_lines = [line for line in lines if _line_open(line, windows, now)]
    budget, first = MARK_PER_TICK, 0
    while True:
        entries, more = queue_page(lines if first == 0 else open_lines, first, now)
        split = classify(entries, windows, now)
        counts["scanned"] += len(entries)
        counts["expired"] += _expire(split.expired)
        admitted = _admit(split.due, now)
        counts["started"] += sum(start_admitted(i) for i in admitted)
        taken = set(admitted)
        budget = _mark([e for e in split.due if e.id not in taken], State.WAITING, budget)
        budget = _mark(split.later, State.QUEUED, budget)
        first += PAGE
        if not more or first >= rt.settings.scheduler_scan or _fleet_full():
            return counts  # closed lines are read to their first page only (labels, early expiry)


def _expire(expired: list[tuple[QueueEntry, dict[str, str]]]) -> int:
    ended = [_set_state(entry.id, State.EXPIRED, error) for entry, error in expired]
    dequeue([entry.id for entry, _ in expired])
    for record in ended:
        if record is not None:
            finished(record)
    return len(expired)


def _admit(due: list[QueueEntry], now: dt.datetime) -> list[str]:
    rt = runtime()
    ordered = admission_order(
        [e.candidate() for e in due], now.timestamp(), rt.settings.ageing_seconds
    )
    admitted = take_slots(rt.redis, ordered, Limits.of(rt.settings)) if ordered else []
    dequeue(admitted)
    return admitted


def _fleet_full() -> bool:
    return bool(runtime().redis.hlen(keys.slots()) >= runtime().settings.fleet)
