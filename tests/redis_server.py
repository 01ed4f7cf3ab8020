"""Start a redis-server of a test's (or benchmark's) own and wait until ``client`` can reach it."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import redis

T = TypeVar("T")


class PortLost(RuntimeError):
    """Another process took the port between ``free_port`` and the server's bind."""


def free_port() -> int:
    """A port the OS had free a moment ago: start servers on it through ``on_free_port``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def on_free_port(start: Callable[[int], T], attempts: int = 5) -> tuple[int, T]:
    """``start(port)`` on a free port; when it raises ``PortLost`` (the port was taken meanwhile),
    again on another one."""
    for attempt in range(attempts):
        port = free_port()
        try:
            return port, start(port)
        except PortLost:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def private_args(port: int, directory: Path, *extra: str) -> list[str]:
    """A throwaway redis-server: loopback only, no persistence, files in ``directory``."""
    return [
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
        *extra,
    ]


def launch_redis(
    args: list[str], client: redis.Redis, timeout: float = 10.0
) -> subprocess.Popen[bytes]:
    """``redis-server *args``, returned once ``client`` gets an answer; the caller ends it by pid.
    Raises ``PortLost`` when it could not bind its port."""
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(["redis-server", *args], stdout=output, stderr=subprocess.STDOUT)
        return _answering(proc, args, client, timeout, output)


def _answering(
    proc: subprocess.Popen[bytes],
    args: list[str],
    client: redis.Redis,
    timeout: float,
    output: IO[bytes],
) -> subprocess.Popen[bytes]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output.seek(0)
            said = output.read().decode(errors="replace")
            if "Address already in use" in said:
                raise PortLost(said)
            raise RuntimeError(
                f"redis-server {' '.join(args)} exited with {proc.returncode}: {said}"
            )
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    proc.wait(10)
    raise RuntimeError(f"redis-server {' '.join(args)} did not answer within {timeout} s")


@contextlib.contextmanager
def private_redis(
    directory: Path, *extra: str, **client_options: Any
) -> Iterator[tuple[int, redis.Redis]]:
    """A throwaway redis-server of the caller's own (``private_args``, then ``extra``) on a free
    port, and a client of it (``client_options``: a user, a password...); ended by its pid on the
    way out."""

    def start(port: int) -> tuple[subprocess.Popen[bytes], redis.Redis]:
        options = {"decode_responses": True, "socket_connect_timeout": 0.5, **client_options}
        client = redis.Redis(port=port, **options)
        return launch_redis(private_args(port, directory, *extra), client), client

    port, (proc, client) = on_free_port(start)
    try:
        yield port, client
    finally:
        proc.kill()
        proc.wait(10)
