"""The simulated migration stream: a real TCP connection from source to destination.

Prepare binds a port from the configured range and waits for one connection; Perform connects to the
URI Prepare returned and sends a header (the domain's identity, definition and state). The memory
copy itself is modelled in time (``workers.drivers.sim.precopy``), not sent byte by byte.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

from workers.drivers.base import DriverError
from workers.drivers.shared.ports import candidates, family, no_free_port

log = logging.getLogger(__name__)
MAX_HEADER = 4 * 1024 * 1024
ACCEPT_TIMEOUT = 600.0


class StreamError(DriverError):
    code = "MIGRATION_STREAM_FAILED"


def parse_uri(uri: str) -> tuple[str, int]:
    """``tcp:ADDRESS:PORT`` (QEMU's form) or ``tcp://ADDRESS:PORT``."""
    rest = uri[len("tcp://") :] if uri.startswith("tcp://") else uri.removeprefix("tcp:")
    if rest == uri or ":" not in rest:
        raise StreamError(f"unsupported migration URI {uri!r}: expected tcp:ADDRESS:PORT")
    address, _, port = rest.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise StreamError(f"migration URI {uri!r} has no valid port") from None
    if not 0 < number < 65536:
        raise StreamError(f"migration URI {uri!r} has an out-of-range port")
    return address.strip("[]"), number


def _read_exact(conn: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = conn.recv(min(65536, remaining))
        if not chunk:
            raise StreamError("migration stream closed early")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class IncomingListener:
    """A listening socket awaiting one migration stream; ``on_header`` returns an error or None."""

    def __init__(
        self, sock: socket.socket, on_header: Callable[[dict[str, Any]], str | None]
    ) -> None:
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self._on_header = on_header
        self._thread = threading.Thread(
            target=self._serve, name=f"incoming-{self.port}", daemon=True
        )
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(ACCEPT_TIMEOUT)
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(30)
            try:
                (length,) = struct.unpack("!I", _read_exact(conn, 4))
                if length > MAX_HEADER:
                    raise StreamError(f"migration stream header of {length} bytes is too large")
                header = json.loads(_read_exact(conn, length))
                if not isinstance(header, dict):
                    raise StreamError("migration stream header is not an object")
                error = self._on_header(header)
            except (OSError, ValueError, StreamError) as exc:
                error = str(exc)
            reply = b"OK" if error is None else b"ERR " + error.encode()[:1000]
            try:
                conn.sendall(struct.pack("!I", len(reply)) + reply)
            except OSError:
                log.warning("could not answer the migration stream on port %s", self.port)
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def listen(
    address: str, ports: range, taken: set[int], on_header: Callable[[dict[str, Any]], str | None]
) -> IncomingListener:
    """Bind the first free port of ``ports`` not in ``taken``."""
    for port in candidates(ports, taken):
        sock = socket.socket(family(address))
        # A port whose last stream is in TIME_WAIT is free to listen on again; without this a
        # busy host runs out of its range within a minute.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
            sock.listen(1)
        except OSError:
            sock.close()
            continue
        return IncomingListener(sock, on_header)
    raise no_free_port(ports, address)


def send_header(uri: str, header: dict[str, Any], timeout: float = 30.0) -> None:
    """Open the stream to ``uri`` and send ``header``; raise when the destination refuses it."""
    address, port = parse_uri(uri)
    payload = json.dumps(header).encode()
    try:
        with socket.create_connection((address, port), timeout=timeout) as conn:
            conn.sendall(struct.pack("!I", len(payload)) + payload)
            (length,) = struct.unpack("!I", _read_exact(conn, 4))
            reply = _read_exact(conn, min(length, 4096)).decode(errors="replace")
    except OSError as exc:
        raise StreamError(f"cannot send the migration stream to {uri}: {exc}") from None
    if reply != "OK":
        raise StreamError(f"destination refused the migration stream: {reply.removeprefix('ERR ')}")
