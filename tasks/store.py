"""Migration records in Redis, changed only by compare-and-set (a script that swaps the value).

``update`` re-reads the record, applies a pure function, and writes it back only if nobody changed
it meanwhile (the script compares the whole stored value with what was read); the function may
refuse (return None) when the record is not in the state it expects.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TypeVar

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


# KEYS: record, active set, events. ARGV: expected, new, terminal, ttl, id, maxlen, event fields.
_SWAP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[3] == '1' then
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('SREM', KEYS[2], ARGV[5])
end
if #ARGV > 6 then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', unpack(ARGV, 7))
end
return 1
"""


class RecordStore:
    def __init__(self, client: Client, record_ttl: int) -> None:
        self.redis = client
        self.record_ttl = record_ttl
        self._swap = client.register_script(_SWAP)

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
        self,
        migration_id: str,
        change: Callable[[MigrationRecord], T | None],
        expected: str | None = None,
    ) -> tuple[MigrationRecord, T] | None:
        """Apply ``change`` atomically. Returns (record, change's result), or None if it refused.

        Two round trips: read the record, then one script writes it back only if it still holds
        exactly what was read (and appends the state change to the events stream). A caller that
        wrote the record last passes what it wrote as ``expected``, saving the read when nobody
        changed it since; otherwise the swap fails and the record is read as usual."""
        key = keys.migration(migration_id)
        while True:
            found, expected = expected or self.redis.get(key), None
            if not found:
                return None
            record = MigrationRecord.from_json(text(found))
            previous = record.state
            result = change(record)
            if result is None:
                return None
            event = event_fields(record, previous) if record.state != previous else {}
            written = self._swap(
                keys=[key, keys.active(), keys.events()],
                args=[
                    found,
                    record.to_json(),
                    "1" if record.terminal else "0",
                    self.record_ttl,
                    record.id,
                    EVENTS_MAXLEN,
                    *(item for pair in event.items() for item in pair),
                ],
            )
            if written:
                return record, result

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
