"""Redis behind Sentinel: one ``sentinel://`` broker URL, understood alike by both clients.

    sentinel://[user:password@]s1:26379;sentinel://s2:26379;sentinel://s3:26379[/DB][?ssl_...]

Each part names one sentinel. The user and password (of the Redis master and replicas, as for
``redis://``), the database and the TLS options (``ssl_cert_reqs``, ``ssl_ca_certs``,
``ssl_certfile``, ``ssl_keyfile``, as for ``rediss://``) may be written on any one part. The
sentinels' own password, if they have one, is the ``sentinel_password`` setting, and the name of
the master they watch is ``sentinel_master``.

Both clients ask the sentinels where the master is on every new connection, so they follow a
failover without a restart: kombu's Sentinel transport (Celery) and redis-py's ``Sentinel``
(records, registry, queue, scripts), whose commands are retried across the switch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from redis.backoff import NoBackoff
from redis.retry import Retry

from broker.settings import ConfigError

SCHEME = "sentinel"
DEFAULT_PORT = 26379
TLS_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


@dataclass(frozen=True)
class SentinelURL:
    sentinels: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: tuple[tuple[str, str], ...] = ()

    def kombu_url(self) -> str:
        """The URL for kombu: every sentinel, the credentials and database on the first (kombu
        reads them there); TLS goes to ``broker_use_ssl``, not the URL."""
        auth = ""
        if self.password is not None or self.username:
            auth = f"{quote(self.username or '')}:{quote(self.password or '', safe='')}@"
        (host, port), *rest = self.sentinels
        first = f"{SCHEME}://{auth}{host}:{port}/{self.db}"
        return ";".join([first, *(f"{SCHEME}://{h}:{p}" for h, p in rest)])

    def tls_options(self) -> dict[str, str]:
        return dict(self.tls)


def is_sentinel(broker_url: str) -> bool:
    return broker_url.startswith(f"{SCHEME}://")


def parse_sentinel_url(broker_url: str) -> SentinelURL:
    """The sentinels, credentials, database and TLS options of a ``sentinel://`` URL."""
    sentinels: list[tuple[str, int]] = []
    found: dict[str, Any] = {}
    for part in broker_url.split(";"):
        parts = urlsplit(part.strip())
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError as exc:
            raise ConfigError(f"broker URL part {part!r}: {exc}") from None
        if parts.scheme != SCHEME or not parts.hostname:
            raise ConfigError(
                f"each part of a Sentinel broker URL is sentinel://HOST:PORT, not {part!r}"
            )
        sentinels.append((parts.hostname, port))
        _take(found, "username", parts.username or None, part)
        _take(found, "password", parts.password, part)
        _take(found, "db", _db(parts.path, part), part)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = sorted(set(query) - set(TLS_OPTIONS))
        if unknown:
            raise ConfigError(f"Sentinel broker URL: unknown option(s) {', '.join(unknown)}")
        _take(found, "tls", tuple(sorted(query.items())) or None, part)
    return SentinelURL(tuple(sentinels), **found)


def _db(path: str, part: str) -> int | None:
    if path in ("", "/"):
        return None
    try:
        return int(path.lstrip("/"))
    except ValueError:
        raise ConfigError(f"broker URL part {part!r}: the database is a number") from None


def _take(found: dict[str, Any], name: str, value: Any, part: str) -> None:
    if value is None:
        return
    if name in found and found[name] != value:
        raise ConfigError(f"Sentinel broker URL: {name} given twice, differently ({part!r})")
    found[name] = value


def sentinel_kwargs(address: SentinelURL, sentinel_password: str) -> dict[str, Any]:
    """How to talk to the sentinels themselves: their password, and the same TLS as Redis."""
    # No retries of its own: a sentinel that does not answer is skipped for the next one, and
    # the client's own retries (broker/connection.py) cover the whole failover.
    kwargs: dict[str, Any] = {
        "socket_timeout": 5,
        "socket_connect_timeout": 5,
        "retry": Retry(NoBackoff(), 0),
    }
    if sentinel_password:
        kwargs["password"] = sentinel_password
    if address.tls:
        kwargs.update(ssl=True, **address.tls_options())
    return kwargs
