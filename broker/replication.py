"""Acknowledging only what a failover cannot lose: wait for a replica to hold it (Redis ``WAIT``).

``WAIT`` covers the writes of the connection it runs on. Replication is one ordered stream, so a
write on that connection, then ``WAIT``, covers every write any connection finished before:
the record, the queue entry, the slot and Celery's message to the dispatcher alike.
"""

from __future__ import annotations

import threading
import time

from broker import keys
from broker.connection import Client

#: How long a count of the master's replicas is trusted.
REPLICAS_TTL = 5.0

_known: dict[int, tuple[float, int]] = {}
_lock = threading.Lock()


def replica_count(client: Client) -> int:
    """Replicas connected to the master (``INFO replication``), read at most every few seconds."""
    now = time.monotonic()
    with _lock:
        seen = _known.get(id(client))
    if seen and now - seen[0] < REPLICAS_TTL:
        return seen[1]
    count = int(client.info("replication").get("connected_slaves", 0))
    with _lock:
        _known[id(client)] = (now, count)
    return count


def held_by_a_replica(client: Client, timeout: float) -> bool | None:
    """Wait until one replica holds every write made so far, for ``timeout`` seconds at most.
    None: the master has no replica (nothing to wait for); else whether one acknowledged."""
    if replica_count(client) == 0:
        return None
    with client.pipeline(transaction=False) as pipe:
        pipe.incr(keys.replication_mark())
        pipe.wait(1, max(1, int(timeout * 1000)))
        _, acknowledged = pipe.execute()
    return int(acknowledged) >= 1
