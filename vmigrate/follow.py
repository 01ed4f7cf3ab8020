"""Following a migration to its end, for the CLI and the demos.

It blocks on the events stream (no polling): it wakes at the migration's next state change, and
at least once a second to show its progress, which changes without an event.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from broker import keys
from tasks.events import concerns, latest_event_id
from vmigrate import output

PROGRESS_SECONDS = 1.0


def wait_for(found: Any, migration_id: str, progress: bool) -> Any:
    """Follow a migration until it ends, printing each change of state and progress to stderr.
    ``found``: what holds the Redis client and the record store (``records()``, ``runtime()``)."""
    position = latest_event_id(found.redis)  # before the record: no change falls in between
    last = None
    while True:
        record = found.store.get(migration_id)
        seen = (record.state, int(record.progress.get("percent", 0)))
        if progress and seen != last:
            print(output.progress_line(record), file=sys.stderr)
            last = seen
        if record.terminal:
            return record
        position = next_change(found.redis, position, migration_id, PROGRESS_SECONDS)


def next_change(client: Any, position: str, migration_id: str, seconds: float) -> str:
    """Block until ``migration_id`` has an event after ``position``, or ``seconds`` pass;
    the position read up to."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        block = max(1, int(left * 1000))
        answer = client.xread({keys.events(): position}, count=1000, block=block)
        for _stream, entries in answer or []:
            for event_id, fields in entries:
                position = event_id
                if concerns(fields, migration_id):
                    return position
    return position
