"""Helpers for benchmarks: a private Redis, percentiles, tables with ratios."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.redis_server import launch_redis, on_free_port, private_args


@contextmanager
def private_redis(directory: Path) -> Iterator[int]:
    """A redis-server of our own on a free port, ended by its pid."""
    port, proc = on_free_port(
        lambda port: launch_redis(
            private_args(port, directory),
            redis.Redis(port=port, socket_connect_timeout=0.5, retry_on_error=[]),
        )
    )
    try:
        yield port
    finally:
        proc.kill()
        proc.wait(10)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "mean": statistics.mean(values),
    }


def table(rows: list[list[object]], headers: list[str]) -> str:
    cells = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells)
