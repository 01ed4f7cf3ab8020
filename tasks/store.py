"""Migration records in Redis, changed only by compare-and-set (a script that swaps the value).

``update`` re-reads the record, applies a pure function, and writes it back only if nobody changed
it meanwhile (the script compares the whole stored value with what was read); the function may
refuse (return None) when the record is not in the state it expects.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from broker import keys
from broker.connection import Client, text
from tasks.errors import Refused
from tasks.lua import lua_script
from tasks.record import MigrationRecord, epoch

if TYPE_CHECKING:
    from tasks.queue_store import QueueWrite

T = TypeVar("T")


EVENTS_MAXLEN = 100_000
_STREAM_ID = re.compile(r"\d{1,20}(-\d{1,20})?")


def check_stream_id(value: str) -> str:
    """An events stream id to read after (``0``, ``1764…-0``; each part below 2**64, as Redis
    reads them); refuses anything else clearly."""
    if not _STREAM_ID.fullmatch(value) or any(int(p) >= 2**64 for p in value.split("-")):
        raise Refused(
            "INVALID_SINCE",
            f"{value!r} is not an events stream id: give 0, or an id such as 1764580000000-0",
        )
    return value


REINDEX_SECONDS = 300


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


_SWAP = lua_script("swap_record")  # KEYS and ARGV: see swap_record.lua
_CREATE = lua_script("create_record")  # KEYS and ARGV: see create_record.lua


class RecordStore:
    def __init__(self, client: Client, record_ttl: int) -> None:
        self.redis = client
        self.record_ttl = record_ttl
        self._swap = client.register_script(_SWAP)
        self._create = client.register_script(_CREATE)

    def get(self, migration_id: str) -> MigrationRecord | None:
        found = self.redis.get(keys.migration(migration_id))
        return MigrationRecord.from_json(text(found)) if found else None

    def create(self, record: MigrationRecord, queued: QueueWrite | None = None) -> bool:
        """Store a new record with its indexes, first event and, ``queued``, its queue entry,
        all at once; False if the id exists already (a duplicate submission)."""
        line = queued.line if queued else "-"
        event = event_fields(record, None)
        created = self._create(
            keys=[
                keys.migration(record.id),
                keys.migrations(),
                keys.not_ended(),
                keys.events(),
                keys.admitted_not_ended(),
                keys.queue(),
                keys.queue_line(line),
                keys.queue_lines(),
                keys.queue_deadlines(),
            ],
            args=[
                record.to_json(),
                epoch(record.created),
                "1" if record.admitted else "0",
                record.id,
                EVENTS_MAXLEN,
                queued.entry if queued else "",
                line,
                queued.score if queued else 0,
                str(queued.deadline) if queued and queued.deadline else "0",
                *(item for pair in event.items() for item in pair),
            ],
        )
        return bool(created)

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
            if self._swap(*self._swap_args(found, record, previous)):
                return record, result

    def update_many(
        self, ids: list[str], change: Callable[[MigrationRecord], bool]
    ) -> list[MigrationRecord]:
        """Apply ``change`` to many records in three round trips, each by the same swap as
        ``update``; a record changed meanwhile (or refused by ``change``) is left as it is.
        Returns the records changed."""
        candidates = []
        for raw in self.get_raw_many(ids):
            if raw is None:
                continue
            record = MigrationRecord.from_json(text(raw))
            previous = record.state
            if change(record):
                candidates.append((raw, record, previous))
        with self.redis.pipeline(transaction=False) as pipe:
            for raw, record, previous in candidates:
                self._swap(*self._swap_args(raw, record, previous), client=pipe)
            written = pipe.execute()
        return [record for (_, record, _), ok in zip(candidates, written, strict=True) if ok]

    def _swap_args(
        self, found: bytes | str, record: MigrationRecord, previous: str
    ) -> tuple[list[str], list[Any]]:
        event = event_fields(record, previous) if record.state != previous else {}
        return (
            [keys.migration(record.id), keys.not_ended(), keys.events(), keys.admitted_not_ended()],
            [
                hashlib.sha1(text(found).encode()).hexdigest(),  # noqa: S324 (not for security)
                record.to_json(),
                "1" if record.terminal else "2" if record.admitted else "0",
                self.record_ttl,
                record.id,
                EVENTS_MAXLEN,
                *(item for pair in event.items() for item in pair),
            ],
        )

    def active_ids(self) -> list[str]:
        return [text(i) for i in self.redis.smembers(keys.not_ended())]

    def running(self, batch: int = 500) -> Iterator[MigrationRecord]:
        """Every migration admitted and not ended (queued ones are not read at all)."""
        if not self.redis.exists(keys.admitted_indexed()):
            self._index_running(batch)
        ids = [text(i) for i in self.redis.smembers(keys.admitted_not_ended())]
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            for migration_id, raw in zip(chunk, self.get_raw_many(chunk), strict=True):
                if raw is None:
                    self.redis.srem(keys.admitted_not_ended(), migration_id)
                    continue
                record = MigrationRecord.from_json(text(raw))
                if record.terminal:
                    self.redis.srem(keys.admitted_not_ended(), migration_id)
                else:
                    yield record

    def get_raw_many(self, ids: list[str]) -> list[Any]:
        """The stored JSON of each id, in order (None where there is no record), in one read."""
        return list(self.redis.mget([keys.migration(i) for i in ids])) if ids else []

    def _index_running(self, batch: int) -> None:
        """Rebuild ``running`` from ``active`` (every few minutes: records written by a version
        that did not keep the set are found too), and drop ids whose record is gone."""
        ids = self.active_ids()
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            found = self.get_raw_many(chunk)
            gone = [i for i, raw in zip(chunk, found, strict=True) if raw is None]
            admitted = [
                i
                for i, raw in zip(chunk, found, strict=True)
                if raw is not None and MigrationRecord.from_json(text(raw)).admitted
            ]
            if gone:
                self.redis.srem(keys.not_ended(), *gone)
            if admitted:
                self.redis.sadd(keys.admitted_not_ended(), *admitted)
        self.redis.set(keys.admitted_indexed(), "1", ex=REINDEX_SECONDS)

    def list_ids(self, limit: int = 1000) -> list[str]:
        ids = self.redis.zrevrange(keys.migrations(), 0, limit - 1)
        return [text(i) for i in ids if isinstance(i, bytes | str)]

    def list(self, limit: int = 1000) -> list[MigrationRecord]:
        found = self.get_raw_many(self.list_ids(limit))
        return [MigrationRecord.from_json(text(t)) for t in found if t]
