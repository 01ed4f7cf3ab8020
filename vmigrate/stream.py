"""``GET /v1/events/stream``: the events stream as server-sent events, live.

Where it starts: after ``Last-Event-ID`` (what a browser's ``EventSource`` sends when it
reconnects), else after ``since``, else at the newest event (what comes next). With
``migration=ID`` it carries that migration's events only, and starts with its current state
(when not resuming); it ends once the migration has ended, at once if it had already.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio

from broker import keys
from broker.connection import async_redis_client
from broker.embedded import resolve_broker_url
from tasks.errors import VMigrateError
from tasks.events import as_event, concerns, ends, latest_event_id, order
from tasks.runtime import Records
from tasks.store import check_stream_id, event_fields

#: How long one read of the stream waits for news (FastAPI pings the client every 15 s).
BLOCK_MS = 10_000
COUNT = 100


@dataclass(frozen=True)
class StreamStart:
    after: str  # read the events after this stream id
    migration: str | None  # only this migration's events, ending with its end
    snapshot: dict[str, str] | None  # the migration's state at connection, sent first
    until: str | None  # the migration had ended at connection: nothing past this id


def start_stream(
    found: Records, since: str | None, last_event_id: str | None, migration: str | None
) -> StreamStart:
    """Where a stream starts, checked before it does (a bad position or id is a 4xx, not a
    broken stream). The newest id is read before the record, so no change falls in between."""
    resume = last_event_id if last_event_id is not None else since
    if resume is not None:
        check_stream_id(resume)
    newest = latest_event_id(found.redis)
    if migration is None:
        return StreamStart(resume or newest, None, None, None)
    record = found.store.get(migration)
    if record is None:
        raise VMigrateError("MIGRATION_UNKNOWN", f"no migration with id {migration!r}")
    snapshot = None if resume else as_event(newest, event_fields(record, None))
    return StreamStart(resume or newest, migration, snapshot, newest if record.terminal else None)


@functools.cache
def _client(broker_url: str, master: str, sentinel_password: str) -> redis.asyncio.Redis:
    return async_redis_client(broker_url, master, sentinel_password)


async def follow(found: Records, start: StreamStart) -> AsyncIterator[dict[str, str]]:
    """The events of a stream, as the API gives them (``tasks.events.as_event``)."""
    if start.snapshot is not None:
        yield start.snapshot
        if start.until is not None:
            return
    settings = found.settings
    client = _client(
        resolve_broker_url(settings), settings.sentinel_master, settings.sentinel_password
    )
    position = start.after
    while True:
        block = None if start.until is not None else BLOCK_MS
        answer: Any = await client.xread({keys.events(): position}, count=COUNT, block=block)
        entries = answer[0][1] if answer else []
        if not entries and start.until is not None:
            return
        for event_id, fields in entries:
            if start.until is not None and order(event_id) > order(start.until):
                return
            position = event_id
            if concerns(fields, start.migration):
                yield as_event(event_id, fields)
            if start.migration is not None and ends(fields, start.migration):
                return
