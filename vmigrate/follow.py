"""Following a migration to its end, for the CLI and the demos."""

from __future__ import annotations

import sys
import time
from typing import Any

from vmigrate import output


def wait_for(store: Any, migration_id: str, progress: bool, interval: float = 0.1) -> Any:
    """Follow a migration until it ends, printing each change of state and progress to stderr."""
    last = None
    while True:
        record = store.get(migration_id)
        seen = (record.state, int(record.progress.get("percent", 0)))
        if progress and seen != last:
            print(output.progress_line(record), file=sys.stderr)
            last = seen
        if record.terminal:
            return record
        time.sleep(interval)
