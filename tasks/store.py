"""Migration records in Redis, changed only by compare-and-set (WATCH/MULTI).

``update`` re-reads the record, applies a pure function, and writes it back only if nobody
changed it meanwhile; the function may refuse (return None) when the record is not in the
state it expects.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TypeVar

import redis

from broker import keys
from broker.connection import Client, text
from tasks.record import MigrationRecord

T = TypeVar("T")


EVENTS_MAXLEN = 100_000


def event_fields(record: MigrationRecord, previous: str | None) -> dict[str, str]:
    return {
        "id": record.id,
        "state": record.state,
        "previous": previous or "",
        "domain": record.domain,
        "source": record.source,
        "destination": record.destination,
        "at": record.updated,
    }


class RecordStore:
    def __init__(self, client: Client, record_ttl: int) -> None:
        self.redis = client
        self.record_ttl = record_ttl

    def get(self, migration_id: str) -> MigrationRecord | None:
        found = self.redis.get(keys.migration(migration_id))
        return MigrationRecord.from_json(text(found)) if found else None

    def create(self, record: MigrationRecord) -> bool:
        """Store a new record; False if the id exists already (duplicate submission)."""
        created = self.redis.set(keys.migration(record.id), record.to_json(), nx=True)
        if not created:
            return False
        with self.redis.pipeline() as pipe:
            pipe.zadd(keys.migrations(), {record.id: _epoch(record.created)})
            pipe.sadd(keys.active(), record.id)
            pipe.xadd(
                keys.events(),
                event_fields(record, None),  # type: ignore[arg-type]
                maxlen=EVENTS_MAXLEN,
                approximate=True,
            )
            pipe.execute()
        return True

    def update(
        self, migration_id: str, change: Callable[[MigrationRecord], T | None]
    ) -> tuple[MigrationRecord, T] | None:
        """Apply ``change`` atomically. Returns (record, change's result), or None if it refused."""
        key = keys.migration(migration_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    found = pipe.get(key)
                    if not found:
                        pipe.unwatch()
                        return None
                    record = MigrationRecord.from_json(text(found))
                    previous = record.state
                    result = change(record)
                    if result is None:
                        pipe.unwatch()
                        return None
                    pipe.multi()
                    pipe.set(key, record.to_json())
                    if record.terminal:
                        pipe.expire(key, self.record_ttl)
                        pipe.srem(keys.active(), record.id)
                    if record.state != previous:
                        pipe.xadd(
                            keys.events(),
                            event_fields(record, previous),  # type: ignore[arg-type]
                            maxlen=EVENTS_MAXLEN,
                            approximate=True,
                        )
                    pipe.execute()
                    return record, result
                except redis.WatchError:
                    continue

    def active_ids(self) -> list[str]:
        return [text(i) for i in self.redis.smembers(keys.active())]

    def list_ids(self, limit: int = 1000) -> list[str]:
        ids = self.redis.zrevrange(keys.migrations(), 0, limit - 1)
        return [text(i) for i in ids if isinstance(i, bytes | str)]

    def list(self, limit: int = 1000) -> list[MigrationRecord]:
        ids = self.list_ids(limit)
        if not ids:
            return []
        found = self.redis.mget([keys.migration(i) for i in ids])
        return [MigrationRecord.from_json(text(t)) for t in found if t]


def _epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
