"""One broker URL, two clients: Celery's (kombu) and vmigrate's own redis-py client.

Accepted forms: ``redis://[user:pass@]host:port/db``, ``rediss://...`` (TLS) and
``redis+socket:///path/to/redis.sock?virtual_host=db`` (a Unix socket, used by the embedded broker).
"""

from __future__ import annotations

import functools
from typing import TypeAlias
from urllib.parse import parse_qs, urlsplit

import redis
import redis.asyncio

from broker.settings import ConfigError

#: A client that decodes replies to str (every vmigrate key holds text).
Client: TypeAlias = redis.Redis


def text(value: bytes | str) -> str:
    """A reply as text (clients decode, but redis-py types replies as bytes or str)."""
    return value.decode() if isinstance(value, bytes) else value


def redis_py_url(broker_url: str) -> str:
    """The redis-py form of a kombu broker URL."""
    parts = urlsplit(broker_url)
    if parts.scheme in ("redis", "rediss"):
        return broker_url
    if parts.scheme == "redis+socket":
        query = parse_qs(parts.query)
        db = query.get("virtual_host", query.get("db", ["0"]))[0]
        return f"unix://{parts.path}?db={db}"
    raise ConfigError(
        f"unsupported broker URL scheme {parts.scheme!r}: use redis://, rediss:// or redis+socket://"
    )


@functools.lru_cache(maxsize=8)
def redis_client(broker_url: str) -> Client:
    """A shared, thread-safe client (connection pool) for ``broker_url``; strings are decoded."""
    client: Client = redis.Redis.from_url(
        redis_py_url(broker_url),
        decode_responses=True,
        socket_connect_timeout=5,
        socket_timeout=30,
        health_check_interval=25,
        retry_on_timeout=True,
    )
    return client


def async_redis_client(broker_url: str) -> redis.asyncio.Redis:
    """An asyncio client for ``broker_url`` (the API's event streams), made like ``redis_client``;
    one per event loop."""
    return redis.asyncio.Redis.from_url(
        redis_py_url(broker_url),
        decode_responses=True,
        socket_connect_timeout=5,
        socket_timeout=30,
        health_check_interval=25,
        retry_on_timeout=True,
    )


def persistence_warning(client: Client) -> str | None:
    """A sentence when the Redis behind ``client`` keeps nothing on disk, else None."""
    try:
        info = client.info("persistence")
    except redis.RedisError:
        return None
    if info.get("aof_enabled"):
        return None
    return (
        "warning: the Redis vmigrate uses keeps no append-only file; if it restarts, queued "
        "migrations and in-flight messages are lost (see deploy/redis/redis.conf)"
    )
