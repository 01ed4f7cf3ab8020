"""Which URLs vmigrate may call back (webhooks): the configured allow-list, matched exactly.

An entry is ``scheme://host[:port][/path]``. A callback matches it when its scheme, host and port
are the entry's (the default port when none is written) and its path is the entry's path or lies
under it at a ``/``. Nothing else gets through: no user name or password in the URL, no other
scheme than http and https, no prefix trick (``https://hooks.example.com.evil.net`` and
``/hooksevil`` match neither ``https://hooks.example.com`` nor ``/hooks``; a path with ``..``
is refused). An API client can
therefore not make vmigrate call an internal address the operator did not list.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}


class BadURL(ValueError):
    """Not an absolute http(s) URL vmigrate could call."""


@dataclass(frozen=True)
class Place:
    scheme: str
    host: str
    port: int
    path: str

    def holds(self, other: Place) -> bool:
        """``other`` is this place or lies under its path."""
        if (self.scheme, self.host, self.port) != (other.scheme, other.host, other.port):
            return False
        base = self.path.rstrip("/")
        return other.path == base or other.path.startswith(base + "/")


def place_of(url: str) -> Place:
    """Scheme, host, port and path of an absolute http(s) URL, or ``BadURL`` saying why not."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise BadURL(f"a callback URL is a string of 1 to {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise BadURL("a callback URL has no spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BadURL(f"{url!r} is not a URL: {exc}") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise BadURL(f"{url!r} is not an absolute http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise BadURL("a callback URL carries no user name or password")
    if parts.fragment:
        raise BadURL("a callback URL has no #fragment")
    segments = parts.path.lower().replace("%2e", ".").split("/")
    if "." in segments or ".." in segments:
        raise BadURL("a callback URL's path has no . or .. segments")
    return Place(
        parts.scheme,
        parts.hostname.lower(),
        port if port is not None else DEFAULT_PORTS[parts.scheme],
        parts.path or "/",
    )


def allowed(url: str, allow: tuple[str, ...]) -> bool:
    """``url`` lies under one entry of ``allow``; ``BadURL`` if it is no callable URL."""
    wanted = place_of(url)
    return any(place_of(entry).holds(wanted) for entry in allow)
