"""kombu's Redis transport with one fix: losing the broker must never kill a worker.

When the connection to Redis drops, the worker closes its channel, and kombu tries to push the
worker's unacknowledged messages back to their queues. In kombu 5.7 that path dereferences the
already-released connection and raises ``AttributeError`` ('NoneType' object has no attribute
'hostname'); Celery's ``ignore_errors`` lets only connection errors through, so the worker died with
"Unrecoverable error" instead of reconnecting (found by tests/integration/test_redis_restart.py).
Here that case raises the connection error it really is: Celery reconnects, and the unacknowledged
messages, still in Redis, are restored later by the visibility timeout (and vmigrate's sweeper).
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection is None or self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection is already closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel
