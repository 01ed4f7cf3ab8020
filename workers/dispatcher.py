"""The dispatcher process (``vmigrate dispatcher``) and the standalone scheduler
(``vmigrate scheduler``): they start migrations, tick the scheduler and sweep; they drive no
host."""

from __future__ import annotations

import os
import threading

from broker.queues import DISPATCHER
from tasks.runtime import runtime
from tasks.ticker import run_ticker
from workers.service import observability, run_celery_worker, warn_if_volatile
from workers.webhooks import run_webhooks, wanted


def run_dispatcher(
    loglevel: str = "WARNING",
    ticker: bool = True,
    log_format: str = "text",
    metrics_port: int | None = None,
) -> None:
    """A dispatcher process: consumes the dispatcher queue and ticks the scheduler.

    Several may run at once: admission is atomic, and every record change is a compare-and-set.
    """

    observability(loglevel, log_format, metrics_port)
    warn_if_volatile(runtime().redis)
    stop = threading.Event()
    if ticker:
        threading.Thread(target=run_ticker, args=(stop,), daemon=True, name="ticker").start()
    rt = runtime()
    if wanted(rt.settings):
        threading.Thread(
            target=run_webhooks, args=(stop, rt.store, rt.settings), daemon=True, name="webhooks"
        ).start()
    try:
        run_celery_worker(DISPATCHER, f"dispatcher-{os.getpid()}@vmigrate", loglevel)
    finally:
        stop.set()


def run_scheduler() -> None:
    """A standalone scheduler: ticks until interrupted (a dispatcher already does this)."""

    stop = threading.Event()
    try:
        run_ticker(stop)
    except KeyboardInterrupt:
        stop.set()
