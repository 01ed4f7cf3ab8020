"""What every vmigrate service process does the same way: logs and metrics, a warning when Redis
keeps nothing on disk, and a Celery worker consuming its queues."""

from __future__ import annotations

import sys

from broker.connection import Client, persistence_warning
from tasks import logs, metrics
from tasks.runtime import runtime


def warn_if_volatile(client: Client) -> None:
    message = persistence_warning(client)
    if message:
        print(f"vmigrate: {message}", file=sys.stderr)


def observability(loglevel: str, log_format: str, metrics_port: int | None) -> None:
    """Logs to stderr (text or JSON lines) and, with a port, Prometheus metrics on /metrics."""

    logs.configure(loglevel, log_format)
    if metrics_port:
        metrics.serve(metrics_port)


def run_celery_worker(queue: str, node_name: str, loglevel: str) -> None:
    rt = runtime()
    rt.app.worker_main(
        argv=[
            "worker",
            "-Q",
            queue,
            "-n",
            node_name,
            "-P",
            "threads",
            "-c",
            str(rt.settings.worker_concurrency),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            loglevel,
        ]
    )
