"""The ticker: dispatchers tick the scheduler every ``scheduler_interval`` (and sweep), and again
whenever a migration ends and frees a slot; triggered ticks coalesce through a lock."""

from __future__ import annotations

import logging
from typing import Any

from broker import keys
from tasks.runtime import runtime
from tasks.scheduler import tick
from tasks.sweeper import sweep, sweep_lock

log = logging.getLogger(__name__)


TICK_LOCK_MS = 10_000  # only if a ticking process dies with the lock


def tick_soon() -> int:
    """Tick now, or make the tick already running go once more: triggered ticks coalesce, and a
    slot freed while one runs is never left idle until the next periodic tick. Returns the
    number of ticks this call ran."""
    client = runtime().redis
    client.set(keys.tick_again(), "1", px=TICK_LOCK_MS)  # first say so, then try the lock
    ran = 0
    while client.set(keys.tick_lock(), "1", nx=True, px=TICK_LOCK_MS):
        try:
            client.delete(keys.tick_again())
            tick()
            ran += 1
        finally:
            client.delete(keys.tick_lock())  # first release, then look whether asked again
        if not client.exists(keys.tick_again()):
            break
    return ran


def run_ticker(stop: Any) -> None:
    """Tick (and sweep) every ``scheduler_interval`` until ``stop`` (a threading.Event) is set."""
    interval = runtime().settings.scheduler_interval
    while not stop.wait(interval):
        try:
            tick()
            if sweep_lock(interval):
                sweep()
        except Exception:  # a broker blip: the next round retries
            log.warning("scheduler round failed", exc_info=True)
