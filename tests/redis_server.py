"""Start a redis-server of a test's (or benchmark's) own and wait until ``client`` can reach it."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    """``redis-server *args``, returned once ``client`` gets an answer; the caller ends it by pid."""
    proc = subprocess.Popen(["redis-server", *args], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server {' '.join(args)} exited with {proc.returncode}")
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    proc.wait(10)
    raise RuntimeError(f"redis-server {' '.join(args)} did not answer within {timeout} s")
