"""Windows across midnight, weekends and DST changes."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from tasks.windows import WindowError, is_open, next_open, parse_window

PARIS = ZoneInfo("Europe/Paris")
NIGHTS = parse_window(
    "nights", {"timezone": "Europe/Paris", "ranges": ["Mon-Fri 22:00-06:00", "Sat-Sun 00:00-24:00"]}
)


def paris(y, mo, d, h, mi=0):
    return dt.datetime(y, mo, d, h, mi, tzinfo=PARIS)


@pytest.mark.parametrize(
    ("instant", "open_"),
    [
        (paris(2026, 11, 23, 21, 59), False),  # Monday evening, before the window
        (paris(2026, 11, 23, 22, 0), True),  # Monday 22:00 opens
        (paris(2026, 11, 24, 0, 30), True),  # past midnight, still Monday's night
        (paris(2026, 11, 24, 5, 59), True),
        (paris(2026, 11, 24, 6, 0), False),  # closes at 06:00
        (paris(2026, 11, 24, 12, 0), False),  # Tuesday noon
        (paris(2026, 11, 28, 12, 0), True),  # Saturday: all day
        (
            paris(2026, 11, 30, 5, 0),
            False,
        ),  # Monday 05:00: Sunday ended at midnight, Monday's night opens at 22:00
        (paris(2026, 11, 30, 12, 0), False),
    ],
)
def test_open_across_midnight_and_weekend(instant, open_):
    assert is_open(NIGHTS, instant) is open_


def test_next_open():
    assert next_open(NIGHTS, paris(2026, 11, 24, 12, 0)) == paris(2026, 11, 24, 22, 0)
    assert next_open(NIGHTS, paris(2026, 11, 27, 6, 30)) == paris(2026, 11, 27, 22, 0)
    now = paris(2026, 11, 28, 9, 0)
    assert next_open(NIGHTS, now) == now


def test_local_hours_hold_across_dst_changes():
    # Europe/Paris leaves summer time on Sunday 2026-10-25 (03:00 CEST -> 02:00 CET)
    # and enters it on Sunday 2026-03-29 (02:00 CET -> 03:00 CEST).
    weeknights = parse_window("w", {"timezone": "Europe/Paris", "ranges": ["Sun-Mon 01:00-04:00"]})
    autumn_utc = dt.datetime(2026, 10, 25, 1, 30, tzinfo=dt.UTC)  # 02:30 CET, after the change
    assert is_open(weeknights, autumn_utc)
    assert not is_open(weeknights, dt.datetime(2026, 10, 25, 3, 0, tzinfo=dt.UTC))  # 04:00 CET
    spring_open = next_open(weeknights, dt.datetime(2026, 3, 28, 12, 0, tzinfo=dt.UTC))
    assert spring_open == dt.datetime(2026, 3, 29, 0, 0, tzinfo=dt.UTC)  # 01:00 CET
    assert not is_open(weeknights, dt.datetime(2026, 3, 29, 2, 0, tzinfo=dt.UTC))  # 04:00 CEST
    # In summer the same wall-clock hours are an hour earlier in UTC.
    assert is_open(weeknights, dt.datetime(2026, 6, 7, 23, 30, tzinfo=dt.UTC))  # Mon 01:30 CEST


@pytest.mark.parametrize(
    "spec",
    [
        {"timezone": "Mars/Olympus", "ranges": ["Mon 01:00-02:00"]},
        {"timezone": "UTC", "ranges": ["Someday 01:00-02:00"]},
        {"timezone": "UTC", "ranges": ["Mon 25:00-02:00"]},
        {"timezone": "UTC", "ranges": []},
        {"ranges": ["Mon 01:00-02:00"]},
    ],
)
def test_bad_windows_are_refused(spec):
    with pytest.raises(WindowError):
        parse_window("bad", spec)
