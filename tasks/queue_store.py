"""Queued migrations, held durably in Redis (never as Celery ETA or countdown messages, which
Redis redelivers and duplicates): a hash of entries, one sorted line per set of windows in
admission order, and their deadlines."""

from __future__ import annotations

import datetime as dt
import json

from broker import keys
from broker.connection import Client, text
from tasks.admission import line_score
from tasks.compat import known_fields
from tasks.release_rules import QueueEntry, line_of


def enqueue(client: Client, ageing: float, *entries: QueueEntry) -> None:
    """Store (or rewrite) queued migrations and their places in their lines, in one round trip
    (``ageing``: the seconds per priority step that order a line)."""
    with client.pipeline() as pipe:
        for entry in entries:
            pipe.hset(keys.queue(), entry.id, json.dumps(entry.__dict__))
            pipe.zadd(
                keys.queue_line(line_of(entry)), {entry.id: line_score(entry.candidate(), ageing)}
            )
            pipe.sadd(keys.queue_lines(), line_of(entry))
            if entry.deadline:
                pipe.zadd(keys.queue_deadlines(), {entry.id: entry.deadline})
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
