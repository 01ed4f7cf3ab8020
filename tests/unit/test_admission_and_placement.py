"""Admission order (priority, ageing, first come), queue classification and evacuation placement."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from tasks.admission import (
    Candidate,
    Limits,
    admission_order,
    effective_priority,
    line_score,
    reserved_bandwidth,
)
from tasks.placement import Target, place
from tasks.release_rules import QueueEntry, classify
from tasks.windows import parse_window

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)  # a Tuesday


def test_higher_priority_first_then_first_come():
    c = [
        Candidate("late-high", "a", "b", priority=5, created=100),
        Candidate("early-low", "a", "b", created=1),
        Candidate("early-high", "a", "b", priority=5, created=50),
    ]
    assert [x.id for x in admission_order(c, now=100, ageing_seconds=0)] == [
        "early-high",
        "late-high",
        "early-low",
    ]


def test_ageing_lets_a_long_waiting_low_priority_pass():
    old_low = Candidate("old-low", "a", "b", priority=0, created=0)
    new_high = Candidate("new-high", "a", "b", priority=3, created=3000)
    assert admission_order([new_high, old_low], now=3000, ageing_seconds=600)[0].id == "old-low"
    assert admission_order([new_high, old_low], now=3000, ageing_seconds=6000)[0].id == "new-high"


def test_bandwidth_budget_shares():
    limits = Limits(2, 2, 5, bandwidth_per_host=1000)
    assert reserved_bandwidth(Candidate("a", "x", "y"), limits) == 500
    assert reserved_bandwidth(Candidate("a", "x", "y", bandwidth=200), limits) == 200
    assert reserved_bandwidth(Candidate("a", "x", "y", bandwidth=5000), limits) == 1000
    assert reserved_bandwidth(Candidate("a", "x", "y"), Limits(2, 2, 5)) == 0


def test_classify_due_later_and_expired():
    closed = parse_window("w", {"timezone": "UTC", "ranges": ["Sat 00:00-01:00"]})
    ts = NOW.timestamp()
    entries = [
        QueueEntry("due", "a", "b"),
        QueueEntry("not-yet", "a", "b", not_before=ts + 60),
        QueueEntry("in-window", "a", "b", windows=["w"]),
        QueueEntry("past", "a", "b", deadline=ts - 1),
        QueueEntry("misses", "a", "b", windows=["w"], deadline=ts + 3600),
    ]
    split = classify(entries, {"w": closed}, NOW)
    assert [e.id for e in split.due] == ["due"]
    assert [e.id for e in split.later] == ["not-yet", "in-window"]
    assert {e.id: err["code"] for e, err in split.expired} == {
        "past": "DEADLINE_PASSED",
        "misses": "WINDOW_MISSES_DEADLINE",
    }


def test_placement_spreads_and_respects_room_and_protocols():
    targets = [
        Target("big", 8 * 2**20, frozenset({3})),
        Target("mid", 6 * 2**20, frozenset({2, 3})),
        Target("old", 64 * 2**20, frozenset({1})),
    ]
    vms = [(f"vm{i}", 2**20) for i in range(6)]
    plan = place(vms, targets, frozenset({2, 3}))
    assert "old" not in plan.values()
    # Each VM goes where the most memory stays free: 8-4 == 6-2, the load is levelled.
    assert sorted(plan.values()) == ["big", "big", "big", "big", "mid", "mid"]
    too_big = place([("huge", 100 * 2**20)], [Target("t", 2**20, frozenset({3}))], frozenset({3}))
    assert too_big == {"huge": None}


@given(
    st.lists(
        st.tuples(st.integers(-1000, 1000), st.floats(0, 1e6, allow_nan=False)),
        min_size=1,
        max_size=30,
    ),
    st.floats(1e6, 2e6, allow_nan=False),
    st.sampled_from([0.0, 1.0, 600.0, 86400.0]),
)
def test_a_queue_line_ordered_by_its_static_score_is_the_admission_order(items, now, ageing):
    """The scheduler reads only the front of a line kept sorted by ``line_score``: that front must
    be what ``admission_order`` would put first, at any later instant."""
    cands = [
        Candidate(f"m{i:03}", "a", "b", priority=p, created=c) for i, (p, c) in enumerate(items)
    ]
    by_score = sorted(cands, key=lambda c: (line_score(c, ageing), c.created, c.id))
    ordered = admission_order(cands, now=now, ageing_seconds=ageing)
    key = lambda c: round(effective_priority(c, now, ageing), 6)  # noqa: E731
    assert [key(c) for c in by_score] == [key(c) for c in ordered]
