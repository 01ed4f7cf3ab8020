"""A webhook receiver on loopback for the tests: it keeps every delivery it is sent, and can go
down (its port closed: connections refused) and come back on the same port."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


class Receiver:
    def __init__(self, port: int) -> None:
        self.port = port
        self.deliveries: list[Delivery] = []
        self.failing = 0  # answer this many deliveries with 503 first
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    refuse = receiver.failing > 0
                    receiver.failing -= refuse
                    if not refuse:
                        receiver.deliveries.append(
                            Delivery(self.path, dict(self.headers), body, time.time())
                        )
                self.send_response(503 if refuse else 204)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def received(self, path: str) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.path == path]

    def events_of(self, path: str, migration_id: str) -> list[Delivery]:
        return [d for d in self.received(path) if d.event.get("id") == migration_id]
