"""The small decisions the flow and submission lean on: protocol tables, state transitions, what a
request wants from the protocol, and the admission order's arithmetic."""

from __future__ import annotations

import pytest

from broker.settings import Settings
from tasks import protocol
from tasks.admission import Candidate, Limits, effective_priority, reserved_bandwidth
from tasks.negotiation import Wants, why_not
from tasks.protocol import Phase, Step
from tasks.record import epoch
from tasks.states import InvalidTransition, State, check_transition


def test_an_invalid_transition_names_both_states():
    with pytest.raises(InvalidTransition, match="cannot go from perform to begin"):
        check_transition(State.PERFORM, State.BEGIN)
    assert check_transition(State.CONFIRM, State.CONFIRM) == State.CONFIRM


@pytest.mark.parametrize(
    ("version", "done", "following"),
    [
        (3, Phase.PREPARE, Phase.PERFORM),
        (2, Phase.PREPARE, Phase.PERFORM),
        (1, Phase.PREPARE, Phase.PERFORM),
        (3, Phase.PERFORM, Phase.FINISH),
    ],
)
def test_a_live_migration_does_not_skip_perform(version, done, following):
    assert protocol.next_step(version, done) == Step(following)


def test_the_handover_is_perform_in_v1_v2_and_finish_in_v3_unless_offline():
    assert protocol.hands_over(1, Phase.PERFORM) and protocol.hands_over(2, Phase.PERFORM)
    assert protocol.hands_over(3, Phase.FINISH) and not protocol.hands_over(3, Phase.PERFORM)
    assert not protocol.hands_over(3, Phase.FINISH, offline=True)


@pytest.mark.parametrize(
    ("version", "done", "undo"),
    [
        (1, Phase.PREPARE, (Step(Phase.ABORT_INCOMING),)),
        (2, Phase.DUMPXML, ()),
        (3, Phase.PREPARE, (Step(Phase.FINISH, True), Step(Phase.CONFIRM, True))),
        (3, Phase.FINISH, None),  # handed over: too late to cancel
        (1, Phase.PERFORM, None),
    ],
)
def test_what_a_cancel_undoes(version, done, undo):
    assert protocol.cancel_steps(version, done) == undo


@pytest.mark.parametrize(
    ("dname", "xml", "flags", "wants"),
    [
        (None, None, frozenset(), Wants()),
        ("new", None, frozenset(), Wants(rename=True)),
        ("", None, frozenset(), Wants()),
        (None, "<domain/>", frozenset(), Wants(dest_xml=True)),
        (None, "", frozenset(), Wants(dest_xml=True)),
        (None, None, frozenset({"offline", "persist"}), Wants(offline=True)),
        (None, None, frozenset({"live"}), Wants()),
    ],
)
def test_what_a_request_wants_from_the_protocol(dname, xml, flags, wants):
    assert Wants.of(dname, xml, flags) == wants


def test_the_reason_v1_cannot_rename():
    assert why_not(1, Wants(rename=True)) == (
        "DNAME_UNSUPPORTED",
        "protocol v1 cannot rename a domain (--dname)",
    )


def test_limits_come_from_the_settings():
    settings = Settings(
        outbound_per_host=3, inbound_per_host=4, fleet=9, bandwidth_per_host_mibps=7
    )
    assert Limits.of(settings) == Limits(3, 4, 9, 7)


def test_a_migration_gains_a_priority_step_per_ageing_period_and_none_before_it_was_made():
    c = Candidate("m", "a", "b", priority=2, created=1000.0)
    assert effective_priority(c, now=1600.0, ageing_seconds=600) == 3.0
    assert effective_priority(c, now=900.0, ageing_seconds=600) == 2.0  # clock skew: no bonus
    assert effective_priority(c, now=99999.0, ageing_seconds=0) == 2.0  # ageing off


@pytest.mark.parametrize(
    ("budget", "outbound", "own", "reserved"),
    [
        (0, 2, 50, 0),  # no budget: nothing reserved
        (100, 2, 0, 50),  # uncapped: an equal share
        (101, 2, 0, 50),  # shares are whole MiB/s
        (1, 2, 0, 1),  # never less than 1
        (3, 2, 0, 1),  # 3 // 2
        (100, 2, 30, 30),  # its own cap
        (100, 2, 500, 100),  # never more than the budget
    ],
)
def test_what_a_migration_reserves_of_a_bandwidth_budget(budget, outbound, own, reserved):
    limits = Limits(outbound, 2, 5, budget)
    assert reserved_bandwidth(Candidate("m", "a", "b", bandwidth=own), limits) == reserved


def test_record_times_read_back_as_epoch_seconds():
    assert epoch("2026-11-27T22:00:00.000Z") == 1795816800.0
    assert epoch(None) == 0.0 and epoch("") == 0.0
