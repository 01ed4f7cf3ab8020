"""Maintenance windows: weekly time ranges in a time zone. Pure functions of an instant.

A range reads ``"Mon-Fri 22:00-06:00"``: it opens at 22:00 on each named day and closes at 06:00
the next morning when the end is not after the start. ``24:00`` is the end of the day. Days are a
single day (``Sat``), a span (``Mon-Fri``, ``Fri-Mon`` wraps) or a list (``Mon,Wed,Fri``). Times are
wall-clock times in the window's time zone, so a window keeps its local hours across DST changes.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RANGE = re.compile(r"^\s*([A-Za-z,\-]+)\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class WindowError(ValueError):
    code = "INVALID_WINDOW"


@dataclass(frozen=True)
class Range:
    days: frozenset[int]  # weekday numbers, Monday = 0
    start: int  # minutes after midnight
    end: int  # minutes after midnight; <= start means the next day


@dataclass(frozen=True)
class Window:
    name: str
    tz: ZoneInfo
    ranges: tuple[Range, ...]


def _day(text: str) -> int:
    key = text.strip().lower()[:3]
    if key not in DAYS:
        raise WindowError(f"unknown day {text!r}: use Mon, Tue, Wed, Thu, Fri, Sat or Sun")
    return DAYS.index(key)


def _days(spec: str) -> frozenset[int]:
    days: set[int] = set()
    for part in spec.split(","):
        if "-" in part:
            first, last = (_day(p) for p in part.split("-", 1))
            span = (last - first) % 7
            days |= {(first + i) % 7 for i in range(span + 1)}
        else:
            days.add(_day(part))
    return frozenset(days)


def _minutes(hours: str, minutes: str, text: str) -> int:
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > 24 * 60:
        raise WindowError(f"invalid time in window range {text!r}")
    return value


def parse_range(text: str) -> Range:
    match = RANGE.match(text)
    if not match:
        raise WindowError(f"window range {text!r} must look like 'Mon-Fri 22:00-06:00'")
    days, h1, m1, h2, m2 = match.groups()
    start, end = _minutes(h1, m1, text), _minutes(h2, m2, text)
    if start == 24 * 60:
        raise WindowError(f"a window range cannot start at 24:00 ({text!r})")
    return Range(_days(days), start, end)


def parse_window(name: str, spec: dict[str, object]) -> Window:
    tz_name = spec.get("timezone")
    ranges = spec.get("ranges")
    if not isinstance(tz_name, str):
        raise WindowError(f"window {name!r} needs a 'timezone' (an IANA name such as Europe/Paris)")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise WindowError(f"window {name!r}: unknown time zone {tz_name!r}") from None
    if not isinstance(ranges, list) or not ranges or not all(isinstance(r, str) for r in ranges):
        raise WindowError(f"window {name!r} needs 'ranges', a non-empty list of strings")
    return Window(name, tz, tuple(parse_range(r) for r in ranges))


def _at(day: dt.date, minutes: int, tz: ZoneInfo) -> dt.datetime:
    """The instant of wall-clock ``minutes`` on ``day`` (24:00 is the next midnight)."""
    base = dt.datetime.combine(day, dt.time(0), tzinfo=tz)
    naive = base.replace(tzinfo=None) + dt.timedelta(minutes=minutes)
    return naive.replace(tzinfo=tz)


def _occurrences(
    window: Window, around: dt.datetime, days_before: int, days_after: int
) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    local_day = around.astimezone(window.tz).date()
    for offset in range(-days_before, days_after + 1):
        day = local_day + dt.timedelta(days=offset)
        for r in window.ranges:
            if day.weekday() not in r.days:
                continue
            start = _at(day, r.start, window.tz)
            end_day = day if r.end > r.start else day + dt.timedelta(days=1)
            yield start, _at(end_day, r.end, window.tz)


def is_open(window: Window, instant: dt.datetime) -> bool:
    return any(start <= instant < end for start, end in _occurrences(window, instant, 1, 0))


def next_open(window: Window, instant: dt.datetime) -> dt.datetime:
    """``instant`` itself when the window is open, else when it next opens (within 8 days)."""
    if is_open(window, instant):
        return instant
    starts = [s for s, _ in _occurrences(window, instant, 0, 8) if s > instant]
    return min(starts)


def all_open(windows: list[Window], instant: dt.datetime) -> bool:
    return all(is_open(w, instant) for w in windows)
