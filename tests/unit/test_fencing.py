"""Fencing as a pure decision: which phase and poll messages may act on a record, and why not."""

from __future__ import annotations

import pytest

from tasks import fencing, flow
from tasks.fencing import Verdict
from tasks.record import MigrationRecord


def at_prepare(status: str = "sent") -> MigrationRecord:
    """A v3 migration a -> b whose Prepare (attempt 2 after a fallback, seq 5) is in flight."""
    r = MigrationRecord(id="m", domain="vm", source="a", destination="b")
    r.candidates = [3, 2]
    flow.start_attempt(r, 3)  # attempt 1, begin seq 1
    r.attempt, r.step.seq, r.step.phase = 2, 5, "prepare"
    if status != "sent":
        flow.open_phase(r, "b")
        r.step.status = status
    return r


def message(**changes) -> dict:
    base = {"migration": "m", "attempt": 2, "seq": 5, "phase": "prepare", "cancelled": False}
    return {**base, **changes}


def test_the_step_in_flight_is_claimed_by_its_host():
    assert fencing.claim(at_prepare(), message(), "b", retry=False) == Verdict.CLAIM


@pytest.mark.parametrize(
    "changes",
    [
        {"attempt": 1},  # the same step of an earlier attempt
        {"attempt": 3},
        {"seq": 4},  # an earlier step
        {"seq": 6},
        {"phase": "finish"},  # the right token, another phase
        {"cancelled": True},  # the right token, the compensating variant
    ],
)
def test_a_message_that_is_not_the_step_in_flight_is_stale_even_while_it_is_sent(changes):
    record = at_prepare("sent")
    assert fencing.claim(record, message(**changes), "b", retry=False) == Verdict.STALE
    assert fencing.claim(record, message(**changes), "b", retry=True) == Verdict.STALE
    assert not fencing.matches(record, message(**changes), "sent")


def test_a_message_delivered_to_the_other_host_does_not_claim():
    assert fencing.claim(at_prepare(), message(), "a", retry=False) == Verdict.WRONG_HOST


@pytest.mark.parametrize("status", ["running", "polling", "done"])
def test_a_second_copy_of_a_claimed_step_is_a_duplicate(status):
    assert fencing.claim(at_prepare(status), message(), "b", retry=False) == Verdict.DUPLICATE


def test_a_retry_reruns_a_step_only_where_it_was_running():
    running = at_prepare("running")
    assert fencing.claim(running, message(), "b", retry=True) == Verdict.RERUN
    running.phases[-1].host = "elsewhere"
    assert fencing.claim(running, message(), "b", retry=True) == Verdict.DUPLICATE
    assert fencing.claim(at_prepare("polling"), message(), "b", retry=True) == Verdict.DUPLICATE


def test_no_record_or_no_step_acts_on_nothing():
    assert fencing.claim(None, message(), "b", retry=False) == Verdict.UNKNOWN
    ended = at_prepare()
    ended.step = None
    assert fencing.claim(ended, message(), "b", retry=False) == Verdict.STALE


def test_only_claim_and_rerun_act():
    assert {v for v in Verdict if v.acts} == {Verdict.CLAIM, Verdict.RERUN}


def test_a_poll_acts_once_per_number_and_only_while_polling():
    record = at_prepare("polling")
    record.step.phase, record.step.poll = "perform", 3
    poll = message(phase="perform", poll=3)
    assert fencing.poll_matches(record, poll)
    assert not fencing.poll_matches(record, {**poll, "poll": 2})
    assert not fencing.poll_matches(record, {**poll, "attempt": 1})
    assert not fencing.poll_matches(record, {**poll, "seq": 4})
    assert not fencing.poll_matches(None, poll)
    record.step.status = "running"
    assert not fencing.poll_matches(record, poll)


@pytest.mark.parametrize(
    ("status", "seq", "applies"),
    [
        ("running", 5, True),
        ("polling", 5, True),
        ("sent", 5, False),
        ("done", 5, False),
        ("running", 4, False),
    ],
)
def test_an_outcome_completes_only_its_own_running_step(status, seq, applies):
    assert fencing.completes(at_prepare(status), seq) is applies


def test_an_outcome_for_an_ended_migration_changes_nothing():
    ended = at_prepare("running")
    ended.step = None
    assert not fencing.completes(ended, 5)
