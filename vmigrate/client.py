"""A small Python client for the REST API, for applications that prefer it (standard library only).

from vmigrate.client import Client
api = Client("http://127.0.0.1:8080", token="...")
migration = api.migrate("web", "hv01", "hv02", live=True, window="nights")
final = api.wait(migration["id"])  # follows the events stream to the end

A webhook receiver checks a delivery with ``verify(secret, headers, body)`` (tasks/webhook_signing).
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from tasks.webhook_signing import BadSignature, verify

__all__ = ["APIError", "BadSignature", "Client", "verify"]

TERMINAL = ("completed", "failed", "cancelled", "expired")
#: A stream is silent at most 15 s (the API's ping): a read waits longer before it gives up.
STREAM_IDLE_SECONDS = 45.0
RECONNECT_SECONDS = 1.0


class APIError(Exception):
    """An error answer of the API: its HTTP status, its stable ``code`` (``HOST_DOWN``,
    ``INVALID_FLAGS``...) and its sentence. Raised as the subclass for its status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class Refused(APIError):
    """400: the request was refused before any host acted (see ``code``)."""


class Unauthorized(APIError):
    """401: no valid bearer token."""


class NotFound(APIError):
    """404: no such migration or host."""


class Conflict(APIError):
    """409: the id is taken, or the migration is in a state that forbids it."""


class InvalidRequest(APIError):
    """422: the body does not match the request schema."""


#: HTTP status -> the error raised for it (others raise ``APIError`` itself).
ERRORS: dict[int, type[APIError]] = {
    400: Refused,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    422: InvalidRequest,
}


class Client:
    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http:// or https:// URL, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _open(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        headers: dict[str, str],
        timeout: float | None = None,
    ) -> Any:
        """Send a request; the open response, or the typed error of an error answer."""
        data = json.dumps(body).encode() if body is not None else None
        url = self.base_url + path  # the scheme was checked in __init__
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in headers.items():
            request.add_header(name, value)
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout)  # noqa: S310
        except urllib.error.HTTPError as exc:
            error = json.loads(exc.read() or b"{}").get("error", {})
            kind = ERRORS.get(exc.code, APIError)
            raise kind(
                exc.code, error.get("code", "HTTP_ERROR"), error.get("message", "")
            ) from None

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        with self._open(method, path, body, {}) as response:
            return json.loads(response.read())

    def hosts(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/hosts")  # type: ignore[no-any-return]

    def migrate(self, domain: str, source: str, destination: str, **options: Any) -> dict[str, Any]:
        body = {"domain": domain, "source": source, "destination": destination, **options}
        return self._call("POST", "/v1/migrations", body)  # type: ignore[no-any-return]

    def get(self, migration_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/migrations/{migration_id}")  # type: ignore[no-any-return]

    def migrations(self, **filters: str) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        return self._call("GET", "/v1/migrations" + (f"?{query}" if query else ""))  # type: ignore[no-any-return]

    def cancel(self, migration_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/migrations/{migration_id}/cancel", {})  # type: ignore[no-any-return]

    def evacuate(
        self, host: str, to: list[str] | None = None, window: str | None = None, drain: bool = False
    ) -> dict[str, Any]:
        body = {"to": to, "window": window, "drain": drain}
        return self._call("POST", f"/v1/hosts/{host}/evacuate", body)  # type: ignore[no-any-return]

    def events(self, since: str = "0", limit: int = 100) -> list[dict[str, Any]]:
        return self._call("GET", f"/v1/events?since={since}&limit={limit}")  # type: ignore[no-any-return]

    def stream(
        self, migration: str | None = None, since: str | None = None, timeout: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """The events stream, live (``GET /v1/events/stream``): each state change as
        ``events()`` lists it. With ``migration``: that migration's current state first, and
        the stream ends with its end. A dropped connection is resumed where it stopped. It is
        followed for ``timeout`` seconds at most (default: for ever), checked at each event and
        at the API's ping, every 15 s."""
        query = {k: v for k, v in {"migration": migration, "since": since}.items() if v}
        give_up = None if timeout is None else time.monotonic() + timeout
        last: str | None = None
        while True:
            try:
                for event in self._read_stream(query, last):
                    if give_up is not None and time.monotonic() > give_up:
                        return
                    if event is not None:
                        last = event["event"]
                        yield event
                return
            except (OSError, http.client.HTTPException):
                if give_up is not None and time.monotonic() > give_up:
                    raise
                time.sleep(RECONNECT_SECONDS)  # the API restarts, a proxy drops idle streams

    def _read_stream(
        self, query: dict[str, str], last: str | None
    ) -> Iterator[dict[str, Any] | None]:
        """The events of one connection, and None for each ping."""
        path = "/v1/events/stream" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last} if last else {})}
        idle = max(STREAM_IDLE_SECONDS, self.timeout)
        with self._open("GET", path, None, headers, idle) as response:
            data: list[str] = []
            for raw in response:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                elif line.startswith(":"):
                    yield None
                elif not line and data:  # a blank line ends an event
                    yield json.loads("\n".join(data))
                    data = []

    def wait(self, migration_id: str, timeout: float = 3600.0) -> dict[str, Any]:
        """Follow the migration's events until it ends; its record then (or after ``timeout``
        seconds, whatever its state)."""
        deadline = time.monotonic() + timeout
        for event in self.stream(migration=migration_id, timeout=timeout):
            if event["state"] in TERMINAL or time.monotonic() > deadline:
                break
        return self.get(migration_id)
