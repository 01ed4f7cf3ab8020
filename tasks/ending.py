"""What follows the end of a migration, whatever ended it (its last phase, a cancel, an expiry):
the domain is free for its next migration, the admission slot is free, and a tick lets a waiting
migration take the slot at once."""

from __future__ import annotations

from broker import keys
from broker.queues import DISPATCHER
from tasks import domain_guard
from tasks.publish import TICK_TASK, send
from tasks.record import MigrationRecord
from tasks.runtime import Runtime, runtime


def finished(record: MigrationRecord, rt: Runtime | None = None) -> None:
    """``record`` ended: release its domain and its slot, and tick if anyone waits."""
    rt = rt or runtime()
    domain_guard.release(rt.redis, record)
    if rt.redis.hdel(keys.slots(), record.id) and rt.redis.hlen(keys.queue()):
        send(TICK_TASK, [], DISPATCHER, rt=rt)
