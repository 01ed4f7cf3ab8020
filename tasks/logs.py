"""Logging: text or JSON lines, and the migration id in every line about a migration.

Phase, poll and start tasks run inside ``migration_context(id)``; a filter copies that id into every
log record made meanwhile, by vmigrate's code, the driver, Celery or kombu.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("migration_id", default=None)


@contextmanager
def migration_context(migration_id: str) -> Iterator[None]:
    token = _current.set(migration_id)
    try:
        yield
    finally:
        _current.reset(token)


class MigrationIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.migration_id = _current.get()
        return True


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "migration_id": getattr(record, "migration_id", None),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure(level: str = "WARNING", fmt: str = "text") -> None:
    """Send every log line to stderr, as text or JSON lines, with the migration id."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(MigrationIdFilter())
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(migration_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
