"""Queued migrations, held durably in Redis (never as Celery ETA or countdown messages, which
Redis redelivers and duplicates): a hash of entries, one sorted line per set of windows in
admission order, and their deadlines."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from broker import keys
from broker.connection import Client, text
from tasks.admission import line_score
from tasks.compat import known_fields
from tasks.release_rules import QueueEntry, line_of


@dataclass(frozen=True)
class QueueWrite:
    """What storing one queue entry writes: the entry, its line and place there, its deadline."""

    id: str
    entry: str  # JSON
    line: str
    score: float
    deadline: float  # 0: none


def queue_write(entry: QueueEntry, ageing: float) -> QueueWrite:
    """``ageing``: the seconds per priority step that order a line."""
    score = line_score(entry.candidate(), ageing)
    return QueueWrite(entry.id, json.dumps(entry.__dict__), line_of(entry), score, entry.deadline)


def enqueue(client: Client, ageing: float, *entries: QueueEntry) -> None:
    """Store (or rewrite) queued migrations and their places in their lines, in one round trip."""
    with client.pipeline() as pipe:
        for write in (queue_write(entry, ageing) for entry in entries):
            pipe.hset(keys.queue(), write.id, write.entry)
            pipe.zadd(keys.queue_line(write.line), {write.id: write.score})
            pipe.sadd(keys.queue_lines(), write.line)
            if write.deadline:
                pipe.zadd(keys.queue_deadlines(), {write.id: write.deadline})
        pipe.execute()


def dequeue(client: Client, ids: list[str]) -> None:
    """Forget queued migrations (admitted, expired, cancelled or vanished), wherever they are."""
    if not ids:
        return
    lines = [text(line) for line in client.smembers(keys.queue_lines())]
    with client.pipeline() as pipe:
        pipe.hdel(keys.queue(), *ids)
        for line in lines:
            pipe.zrem(keys.queue_line(line), *ids)
        pipe.zrem(keys.queue_deadlines(), *ids)
        pipe.execute()


PAGE = 64  # entries a tick reads from each line at a time


def queue_page(
    client: Client, lines: list[str], first: int, now: dt.datetime
) -> tuple[list[QueueEntry], bool]:
    """Entries ``first`` to ``first + PAGE`` of each line (and, on the first page, whatever
    reached its deadline), and whether any line has more behind them."""
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
        dequeue(client, vanished)
    entries = [QueueEntry(**known_fields(QueueEntry, json.loads(raw))) for raw in found if raw]
    return entries, more
