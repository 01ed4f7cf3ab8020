"""kombu's Redis transports (plain and Sentinel) with one fix: losing the broker must never kill a
worker.

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
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis


class Closed:
    """The fix, for both channels below."""

    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection is None or self.connection.client is None:  # type: ignore[attr-defined]
            raise redis.exceptions.ConnectionError("the broker connection is already closed")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]


class Channel(Closed, kombu_redis.Channel):  # type: ignore[misc]
    pass


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel


class SentinelChannel(Closed, kombu_redis.SentinelChannel):  # type: ignore[misc]
    pass


class SentinelTransport(kombu_redis.SentinelTransport):  # type: ignore[misc]
    """kombu's Sentinel transport (``sentinel://``, see broker/sentinel.py), with the fix."""

    Channel = SentinelChannel


def use_for_sentinel_urls() -> None:
    """Make ``sentinel://`` mean the transport above in this process. Celery's consumer treats
    the URL's sentinels as failover alternates and reconnects to the next one by its URL, whose
    scheme names kombu's own transport: without this, a failover reached the unfixed channel and
    the worker died (tests/integration/test_sentinel_failover.py)."""
    TRANSPORT_ALIASES["sentinel"] = f"{__name__}:SentinelTransport"
