"""Celery app, queues, routing, keys, settings and security of vmigrate.

``celery -A broker ...`` finds the app here (``broker.app``), as Celery expects. The app is
built on first use, so a command can choose its broker before anything connects.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from broker.app import get_app  # noqa: PLC0415 (Celery only when asked for: celery -A broker)

        return get_app()
    raise AttributeError(f"module 'broker' has no attribute {name!r}")
