"""Facts about the run the tests need before anything starts: CI or not, and the Redis database
this run owns."""

from __future__ import annotations

import atexit
import os
import socket
from typing import NoReturn

import redis

#: CI services set CI=true (GitHub, GitLab) or CI=1 (others): either makes a missing dependency
#: a failure instead of a skip.
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing_dependency(message: str) -> NoReturn:
    """Skip the test saying what is missing; in CI, fail instead."""
    import pytest

    if IN_CI:
        pytest.fail(message + " (in CI a missing dependency is a failure)")
    pytest.skip(message)


def require_command(command: str, package: str) -> None:
    """``command`` is on the PATH, or the test skips (fails in CI) naming the package."""
    import shutil

    if not shutil.which(command):
        missing_dependency(f"{command} is missing: apt-get install {package}")


LEASE_KEY = "vmigrate-test:lease"
LEASE_SECONDS = 6 * 3600
HOST_URL = "redis://127.0.0.1:6379"


def lease_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_database(url: str = HOST_URL, first: int = 1, last: int = 15) -> int | None:
    """A database of the machine's Redis that no other test run holds: each run takes one with an
    expiring lease key, so two runs at once never flush each other's data. None without Redis."""
    for db in range(last, first - 1, -1):
        try:
            client = redis.Redis.from_url(f"{url}/{db}", socket_connect_timeout=1)
            if client.set(LEASE_KEY, lease_holder(), nx=True, ex=LEASE_SECONDS):
                atexit.register(release_lease, client)  # also when no test used Redis
                return db
        except redis.RedisError:
            return None
    raise RuntimeError(f"every database {first}-{last} of {url} is leased by another test run")


def renew_lease(client: redis.Redis) -> None:
    client.set(LEASE_KEY, lease_holder(), ex=LEASE_SECONDS)


def release_lease(client: redis.Redis) -> None:
    try:
        if client.get(LEASE_KEY) in (lease_holder(), lease_holder().encode()):
            client.delete(LEASE_KEY)
    except redis.RedisError:
        pass  # the lease expires by itself
