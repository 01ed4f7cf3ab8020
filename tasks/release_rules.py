"""Pure: which queued migrations may start now, which wait for a window or a time, and which can
no longer start before their deadline. No I/O."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from tasks.admission import Candidate
from tasks.states import State
from tasks.windows import Window, all_open, next_open, parse_window


@dataclass
class QueueEntry:
    id: str
    source: str
    destination: str
    bandwidth: int = 0
    priority: int = 0
    created: float = 0.0
    not_before: float = 0.0
    deadline: float = 0.0
    windows: list[str] = field(default_factory=list)
    state: str = State.QUEUED.value

    def candidate(self) -> Candidate:
        return Candidate(
            self.id, self.source, self.destination, self.bandwidth, self.priority, self.created
        )


@dataclass
class Classified:
    due: list[QueueEntry] = field(default_factory=list)
    later: list[QueueEntry] = field(default_factory=list)
    expired: list[tuple[QueueEntry, dict[str, str]]] = field(default_factory=list)


def load_windows(specs: dict[str, dict[str, Any]]) -> dict[str, Window]:
    return {name: parse_window(name, spec) for name, spec in specs.items()}


def _misses_deadline(entry: QueueEntry, windows: list[Window], now: dt.datetime) -> str | None:
    if not entry.deadline:
        return None
    deadline = dt.datetime.fromtimestamp(entry.deadline, dt.UTC)
    start = max(now, dt.datetime.fromtimestamp(entry.not_before, dt.UTC))
    for window in windows:
        if next_open(window, start) >= deadline:
            return (
                f"window {window.name!r} does not open before the deadline {deadline.isoformat()}"
            )
    return None


def classify(entries: list[QueueEntry], windows: dict[str, Window], now: dt.datetime) -> Classified:
    """Pure: which entries may start now, which wait, which can no longer start in time."""
    result = Classified()
    stamp = now.timestamp()
    for entry in entries:
        needed = [windows[n] for n in entry.windows if n in windows]
        if entry.deadline and stamp >= entry.deadline:
            result.expired.append(
                (
                    entry,
                    {
                        "code": "DEADLINE_PASSED",
                        "message": "the migration could not start before its deadline",
                    },
                )
            )
        elif stamp >= entry.not_before and all_open(needed, now):
            result.due.append(entry)
        elif reason := _misses_deadline(entry, needed, now):
            result.expired.append((entry, {"code": "WINDOW_MISSES_DEADLINE", "message": reason}))
        else:
            result.later.append(entry)
    return result


def line_of(entry: QueueEntry) -> str:
    return "|".join(sorted(entry.windows)) or "-"


def line_open(line: str, windows: dict[str, Window], now: dt.datetime) -> bool:
    needed = [windows[n] for n in line.split("|") if n in windows] if line != "-" else []
    return all_open(needed, now)
