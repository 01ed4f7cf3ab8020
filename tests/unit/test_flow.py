"""The libvirt client's decisions, as pure functions over a record: sequence, rollback, fallback."""

from __future__ import annotations

import json

import pytest

from tasks import flow
from tasks.protocol import Phase
from tasks.record import MigrationRecord
from tasks.states import InvalidTransition, State, check_transition

OK = flow.Outcome(True, {"xml": "<domain/>", "cookie": "c", "uri": "tcp:h:1", "state": "running"})


def fail(code: str = "BOOM") -> flow.Outcome:
    return flow.Outcome(False, error={"code": code, "message": f"{code} happened"})


def record(version: int, candidates: list[int] | None = None, **kw) -> MigrationRecord:
    r = MigrationRecord(id="m", domain="vm", source="a", destination="b", **kw)
    r.candidates = candidates or [version]
    flow.start_attempt(r, version)
    return r


def run(r: MigrationRecord, outcomes: dict[str, flow.Outcome]) -> list[str]:
    """Drive ``r`` to the end; each phase succeeds unless ``outcomes`` says otherwise."""
    seen = []
    while not r.terminal:
        name = r.step.phase + ("(c)" if r.step.cancelled else "")
        seen.append(f"{name}@v{r.protocol}")
        flow.open_phase(
            r, flow.host_of(r, flow.protocol.Step(Phase(r.step.phase), r.step.cancelled))
        )
        key = f"{name}@v{r.protocol}"
        flow.advance(r, outcomes.get(key, outcomes.get(name, OK)))
    return seen


@pytest.mark.parametrize(
    ("version", "phases"),
    [
        (1, ["prepare@v1", "perform@v1", "finish@v1"]),
        (2, ["dumpxml@v2", "prepare@v2", "perform@v2", "finish@v2"]),
        (3, ["begin@v3", "prepare@v3", "perform@v3", "finish@v3", "confirm@v3"]),
    ],
)
def test_happy_sequences(version, phases):
    r = record(version)
    assert run(r, {}) == phases
    assert r.state == State.COMPLETED and r.vm_host == "b" and r.error is None


def test_offline_v3_skips_perform_and_keeps_the_vm_where_it_is():
    r = record(3, flags=["offline", "persist"])
    assert run(r, {}) == ["begin@v3", "prepare@v3", "finish@v3", "confirm@v3"]
    assert r.state == State.COMPLETED


@pytest.mark.parametrize(
    ("version", "failing", "phases", "state", "owner"),
    [
        (3, "begin", ["begin@v3"], State.FAILED, "a"),
        (3, "prepare", ["begin@v3", "prepare@v3", "confirm(c)@v3"], State.FAILED, "a"),
        (3, "perform", ["begin@v3", "prepare@v3", "perform@v3", "finish(c)@v3"], State.FAILED, "a"),
        (
            3,
            "finish",
            ["begin@v3", "prepare@v3", "perform@v3", "finish@v3", "confirm(c)@v3"],
            State.FAILED,
            "a",
        ),
        (
            3,
            "confirm",
            [
                "begin@v3",
                "prepare@v3",
                "perform@v3",
                "finish@v3",
                "confirm@v3",
                "destroy_source@v3",
            ],
            State.COMPLETED,
            "b",
        ),
        (
            2,
            "perform",
            ["dumpxml@v2", "prepare@v2", "perform@v2", "finish(c)@v2"],
            State.FAILED,
            "a",
        ),
        (2, "finish", ["dumpxml@v2", "prepare@v2", "perform@v2", "finish@v2"], State.FAILED, "b"),
        (1, "perform", ["prepare@v1", "perform@v1", "abort_incoming@v1"], State.FAILED, "a"),
        (1, "finish", ["prepare@v1", "perform@v1", "finish@v1"], State.FAILED, "b"),
    ],
)
def test_rollback_matrix(version, failing, phases, state, owner):
    r = record(version)
    assert run(r, {failing: fail()}) == phases
    assert r.state == state and r.vm_host == owner
    if state == State.FAILED:
        assert r.error == {"code": "BOOM", "message": "BOOM happened"}


def test_refused_version_on_prepare3_ends_begin_then_falls_back():
    r = record(3, candidates=[3, 2, 1])
    phases = run(
        r, {"prepare@v3": fail("VERSION_UNSUPPORTED"), "prepare@v2": fail("VERSION_UNSUPPORTED")}
    )
    assert phases == [
        "begin@v3",
        "prepare@v3",
        "confirm(c)@v3",
        "dumpxml@v2",
        "prepare@v2",
        "prepare@v1",
        "perform@v1",
        "finish@v1",
    ]
    assert r.state == State.COMPLETED and r.protocol == 1 and r.attempt == 3
    assert len(r.warnings) == 2


def test_refused_version_without_a_usable_fallback_fails_with_the_reason():
    r = record(3, candidates=[3, 2], dname="new")
    run(r, {"begin@v3": fail("VERSION_UNSUPPORTED"), "dumpxml@v2": fail("VERSION_UNSUPPORTED")})
    assert r.state == State.FAILED and r.error["code"] == "VERSION_UNSUPPORTED"
    assert "cannot rename" in r.error["message"]


def test_failed_compensation_is_reported_not_hidden():
    r = record(3)
    run(r, {"finish": fail(), "confirm(c)": fail("RESUME_FAILED")})
    assert r.state == State.FAILED
    assert r.error["code"] == "BOOM"
    assert any("RESUME_FAILED happened" in w for w in r.warnings)


def test_terminal_states_allow_no_transition():
    for terminal in (State.COMPLETED, State.FAILED, State.CANCELLED, State.EXPIRED):
        with pytest.raises(InvalidTransition):
            check_transition(terminal, State.PENDING)
    with pytest.raises(InvalidTransition):
        check_transition(State.PERFORM, State.BEGIN)


def test_a_record_written_by_another_version_still_loads():
    r = record(3)
    data = json.loads(r.to_json())
    data["field_from_the_future"] = 1
    data["step"]["sent_at"] = "2026-11-26T00:00:00Z"  # a field this version no longer writes
    loaded = MigrationRecord.from_json(json.dumps(data))
    assert loaded.step.seq == r.step.seq and loaded.state == r.state


def test_polls_start_fast_and_back_off_to_the_interval():
    from tasks.publish import poll_delay

    delays = [poll_delay(n, 0.2) for n in range(8)]
    assert delays[:4] == [0.025, 0.05, 0.1, 0.2]
    assert all(d == 0.2 for d in delays[3:])
    assert poll_delay(0, 0.01) == 0.01  # never slower than the configured interval
    assert poll_delay(10_000, 0.2) == 0.2


def test_a_transfer_about_to_end_is_polled_sooner():
    from tasks.publish import poll_delay, seconds_left

    before = {"memory_processed": 100e6, "memory_remaining": 400e6}
    after = {"memory_processed": 300e6, "memory_remaining": 20e6}  # 200 MB in 0.2 s: 1 GB/s
    left = seconds_left(before, after, 0.2)
    assert left is not None and abs(left - 0.02) < 1e-9
    assert poll_delay(5, 0.2, left) == 0.025  # not sooner than the first poll
    assert (
        poll_delay(5, 0.2, seconds_left(before, {**after, "memory_remaining": 100e6}, 0.2)) == 0.1
    )
    assert poll_delay(5, 0.2, 30.0) == 0.2  # a long way to go: the interval
    assert seconds_left(after, after, 0.2) is None  # no rate seen: no estimate
