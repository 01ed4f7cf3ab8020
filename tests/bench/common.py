"""Helpers for benchmarks: a private Redis, percentiles, tables with ratios."""

from __future__ import annotations

import statistics
import time
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


def wait_ready(console: Path, timeout: float = 600.0) -> None:
    """Until the busy guest has filled its memory and beats (three heartbeats after READY)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = console.read_text(errors="replace") if console.exists() else ""
        if "READY" in text and text.split("READY", 1)[1].count("HB ") >= 3:
            return
        time.sleep(0.5)
    raise TimeoutError(f"the guest did not become ready within {timeout} s ({console})")


def comparison_headers(baseline: str) -> list[str]:
    """The columns of a real-migration benchmark: the baseline against vmigrate."""
    return [
        "guest",
        f"{baseline} (s)",
        "vmigrate (s)",
        "ratio",
        f"downtime {baseline}/vm (ms)",
        f"sent {baseline}/vm (MiB)",
    ]


def comparison_row(
    label: str, theirs: list[dict[str, float]], ours: list[dict[str, float]]
) -> list[str]:
    """Medians of the baseline's and vmigrate's runs (seconds, downtime_ms, mib), and the ratio."""

    def median(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    a, b = median(theirs, "seconds"), median(ours, "seconds")
    return [
        label,
        f"{a:.2f}",
        f"{b:.2f}",
        f"{b / a:.2f}",
        f"{median(theirs, 'downtime_ms'):.0f} / {median(ours, 'downtime_ms'):.0f}",
        f"{median(theirs, 'mib'):.0f} / {median(ours, 'mib'):.0f}",
    ]
