"""One broker URL, two clients: Celery's (kombu) and vmigrate's own redis-py client.

Accepted forms: ``redis://[user:pass@]host:port/db``, ``rediss://...`` (TLS),
``redis+socket:///path/to/redis.sock?virtual_host=db`` (a Unix socket, used by the embedded broker)
and ``sentinel://s1:26379;sentinel://s2:26379;...`` (Redis behind Sentinel, broker/sentinel.py).
"""

from __future__ import annotations

import functools
import sys
from typing import Any, TypeAlias
from urllib.parse import parse_qs, urlsplit

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.sentinel
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from broker.sentinel import SentinelURL, is_sentinel, parse_sentinel_url, sentinel_kwargs
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
        f"unsupported broker URL scheme {parts.scheme!r}: use redis://, rediss://, "
        "redis+socket:// or sentinel://"
    )


#: How each client connects, wherever the URL points.
_CONNECTION: dict[str, Any] = {
    "socket_connect_timeout": 5,
    "socket_timeout": 30,
    "health_check_interval": 25,
}
#: Behind Sentinel, a command that meets a dead or demoted master is sent again (to the master
#: the sentinels name then) for about 30 s: a failover with deploy/redis/sentinel.conf's
#: 5 s down-after-milliseconds takes about 8 s.
FAILOVER_RETRIES = 18


@functools.lru_cache(maxsize=8)
def redis_client(broker_url: str, master: str = "vmigrate", sentinel_password: str = "") -> Client:
    """A shared, thread-safe client (connection pool) for ``broker_url``; strings are decoded.
    ``master`` and ``sentinel_password``: for a ``sentinel://`` URL (broker/sentinel.py)."""
    if is_sentinel(broker_url):
        return _sentinel_client(parse_sentinel_url(broker_url), master, sentinel_password)
    client: Client = redis.Redis.from_url(
        redis_py_url(broker_url), decode_responses=True, retry_on_timeout=True, **_CONNECTION
    )
    return client


class FollowingConnection(redis.sentinel.SentinelManagedConnection):
    """A connection to the master that asks the sentinels where it is on every reconnection.

    redis-py 8's ``SentinelManagedConnection`` asks only in ``connect()``; a command sent again
    after a connection error reconnects through ``connect_check_health()`` to the address of its
    last connection, the dead master, for as long as its retries last (found by
    tests/integration/test_sentinel_failover.py: a submission's ``WAIT`` failed that way)."""

    def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if not self._sock and self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        super().connect_check_health(check_health, retry_socket_connect)


class FollowingSSLConnection(FollowingConnection, redis.SSLConnection):
    pass


def _master_options(address: SentinelURL) -> dict[str, Any]:
    """How both clients (sync and asyncio) connect to the master the sentinels name."""
    return {
        "decode_responses": True,
        "db": address.db,
        "username": address.username,
        "password": address.password,
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError],
        **_CONNECTION,
        **({"ssl": True, **address.tls_options()} if address.tls else {}),
    }


def _failover_backoff() -> ExponentialBackoff:
    return ExponentialBackoff(cap=2.0, base=0.1)


def _sentinel_client(address: SentinelURL, master: str, sentinel_password: str) -> Client:
    watchers = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(address.sentinels), sentinel_kwargs=sentinel_kwargs(address, sentinel_password)
    )
    client: Client = watchers.master_for(  # type: ignore[no-untyped-call]
        master,
        connection_class=FollowingSSLConnection if address.tls else FollowingConnection,
        retry=Retry(_failover_backoff(), FAILOVER_RETRIES),
        **_master_options(address),
    )
    return client


def async_redis_client(
    broker_url: str, master: str = "vmigrate", sentinel_password: str = ""
) -> redis.asyncio.Redis:
    """An asyncio client for ``broker_url`` (the API's event streams), made like ``redis_client``;
    one per event loop."""
    if not is_sentinel(broker_url):
        return redis.asyncio.Redis.from_url(
            redis_py_url(broker_url), decode_responses=True, retry_on_timeout=True, **_CONNECTION
        )
    address = parse_sentinel_url(broker_url)
    watchers = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(address.sentinels), sentinel_kwargs=sentinel_kwargs(address, sentinel_password)
    )
    client: redis.asyncio.Redis = watchers.master_for(
        master,
        retry=redis.asyncio.retry.Retry(_failover_backoff(), FAILOVER_RETRIES),
        **_master_options(address),
    )
    return client


def lost_the_broker(exc: BaseException) -> bool:
    """``exc`` says the broker went out of reach: redis-py's errors, or kombu's when kombu is
    loaded (a process that never published has none to raise, and need not import it)."""
    kombu = sys.modules.get("kombu.exceptions")
    kinds: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)
    if kombu is not None:
        kinds += (kombu.OperationalError,)
    return isinstance(exc, kinds)


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
