"""A small Python client for the REST API, for applications that prefer it (standard library only).

from vmigrate.client import Client
api = Client("http://127.0.0.1:8080", token="...")
migration = api.migrate("web", "hv01", "hv02", live=True, window="nights")
final = api.wait(migration["id"])
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

TERMINAL = ("completed", "failed", "cancelled", "expired")


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

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        url = self.base_url + path  # the scheme was checked in __init__
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            error = json.loads(exc.read() or b"{}").get("error", {})
            kind = ERRORS.get(exc.code, APIError)
            raise kind(
                exc.code, error.get("code", "HTTP_ERROR"), error.get("message", "")
            ) from None

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

    def wait(
        self, migration_id: str, timeout: float = 3600.0, interval: float = 0.2
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            record = self.get(migration_id)
            if record["state"] in TERMINAL or time.monotonic() > deadline:
                return record
            time.sleep(interval)
