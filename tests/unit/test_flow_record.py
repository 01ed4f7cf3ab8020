"""What ``vmigrate show`` tells about a migration, as the flow writes it: each phase as it ran, the
step in flight, what the phases hand each other, and the reason a migration ended as it did."""

from __future__ import annotations

import pytest

from tasks import flow
from tasks.protocol import Phase, Step
from tasks.record import MigrationRecord
from tasks.states import State


def new(version: int = 3, candidates: list[int] | None = None, **kw) -> MigrationRecord:
    r = MigrationRecord(id="m", domain="vm", source="src", destination="dst", **kw)
    r.candidates = candidates or [version]
    flow.start_attempt(r, version)
    return r


def ok(**outputs) -> flow.Outcome:
    return flow.Outcome(True, outputs)


def fail(code: str = "BOOM") -> flow.Outcome:
    return flow.Outcome(False, error={"code": code, "message": f"{code} happened"})


def step_once(r: MigrationRecord, outcome: flow.Outcome) -> Step | None:
    step = Step(Phase(r.step.phase), r.step.cancelled)
    flow.open_phase(r, flow.host_of(r, step))
    return flow.advance(r, outcome)


V3_OUTPUTS = {
    "begin": ok(xml="<domain>src</domain>", cookie="c-begin", state="running"),
    "prepare": ok(uri="tcp:dst:49152", cookie="c-prepare"),
    "perform": ok(cookie="c-perform", progress={"memory_processed": 42.0}),
    "finish": ok(cookie="c-finish"),
    "confirm": ok(),
}


def test_each_phase_is_shown_as_it_ran_with_its_host_version_and_times():
    r = new(3)
    seqs = []
    while not r.terminal:
        seqs.append((r.step.seq, r.step.phase, r.step.status))
        step_once(r, V3_OUTPUTS[r.step.phase])
    assert seqs == [
        (1, "begin", "sent"),
        (2, "prepare", "sent"),
        (3, "perform", "sent"),
        (4, "finish", "sent"),
        (5, "confirm", "sent"),
    ]
    shown = [(p.name, p.host, p.version, p.cancelled, p.outcome, p.error) for p in r.phases]
    assert shown == [
        ("begin", "src", 3, False, "ok", None),
        ("prepare", "dst", 3, False, "ok", None),
        ("perform", "src", 3, False, "ok", None),
        ("finish", "dst", 3, False, "ok", None),
        ("confirm", "src", 3, False, "ok", None),
    ]
    for run in r.phases:
        assert run.started and run.ended and run.started <= run.ended
    assert r.step is None and r.state == State.COMPLETED
    assert r.progress == {"memory_processed": 42.0}


def test_a_step_is_running_once_opened_and_done_once_it_ended():
    r = new(3)
    assert r.step.status == "sent"
    flow.open_phase(r, "src")
    assert r.step.status == "running" and r.phases[-1].outcome == "running"
    assert r.step.touched > 0 and r.phases[-1].ended is None
    flow.advance(r, V3_OUTPUTS["begin"])
    assert r.phases[-1].outcome == "ok" and r.phases[-1].ended is not None
    assert (r.step.seq, r.step.phase, r.step.status) == (2, "prepare", "sent")


def test_the_phases_hand_each_other_cookies_the_uri_and_the_source_xml():
    r = new(3)
    step_once(r, ok(xml="<domain>src</domain>", cookie="c-begin", state="paused"))
    assert r.exchange == {
        "cookie": "c-begin",
        "dom_xml": "<domain>src</domain>",
        "source_state": "paused",
    }
    step_once(r, ok(uri="tcp:dst:49152", cookie="c-prepare"))
    assert r.exchange["uri"] == "tcp:dst:49152" and r.exchange["cookie"] == "c-prepare"
    step_once(r, ok(progress={}))  # no cookie from Perform: the last one stays
    assert r.exchange["cookie"] == "c-prepare" and r.exchange["dom_xml"] == "<domain>src</domain>"
    assert r.progress == {}


def test_progress_is_taken_only_from_perform():
    r = new(3)
    step_once(r, ok(xml="<domain/>", state="running", progress={"memory_processed": 1.0}))
    assert r.progress == {}


def test_a_failed_phase_shows_its_error_and_the_migration_its_reason():
    r = new(3)
    step_once(r, fail("NO_SUCH_DOMAIN"))
    run = r.phases[-1]
    assert run.outcome == "failed" and run.error == {
        "code": "NO_SUCH_DOMAIN",
        "message": "NO_SUCH_DOMAIN happened",
    }
    assert r.state == State.FAILED and r.error == run.error and r.step is None


def test_a_fallback_keeps_only_the_source_state_between_attempts():
    r = new(3, candidates=[3, 2, 1])
    step_once(r, ok(xml="<domain/>", cookie="c", state="paused"))
    step_once(r, fail("VERSION_UNSUPPORTED"))  # Prepare3 refused: Confirm3(cancelled) runs
    assert (r.step.phase, r.step.cancelled, r.state) == ("confirm", True, State.ROLLBACK)
    step_once(r, ok())
    assert r.protocol == 2 and r.attempt == 2 and r.exchange == {"source_state": "paused"}
    assert (r.step.seq, r.step.phase) == (4, "dumpxml")
    assert any("refused protocol v3" in w and "falling back to v2" in w for w in r.warnings)
    assert r.error is None
    assert flow.dest_paused(r)  # the paused source travels into v2 as libvirt's client does


@pytest.mark.parametrize(
    ("flags", "source_state", "paused"),
    [
        ([], "running", False),
        (["paused"], "running", True),
        ([], "paused", True),
        ([], None, False),
    ],
)
def test_the_destination_is_paused_when_asked_or_when_the_source_was(flags, source_state, paused):
    r = new(3, flags=flags)
    if source_state is not None:
        r.exchange["source_state"] = source_state
    assert flow.dest_paused(r) is paused


@pytest.mark.parametrize(
    ("phase", "host"),
    [
        (Phase.DUMPXML, "src"),
        (Phase.BEGIN, "src"),
        (Phase.PREPARE, "dst"),
        (Phase.PERFORM, "src"),
        (Phase.FINISH, "dst"),
        (Phase.CONFIRM, "src"),
        (Phase.ABORT_INCOMING, "dst"),
        (Phase.DESTROY_SOURCE, "src"),
    ],
)
def test_each_phase_runs_on_its_side(phase, host):
    assert flow.host_of(new(3), Step(phase)) == host
    assert flow.host_of(new(3), Step(phase, cancelled=True)) == host


def test_a_cancel_before_the_handover_undoes_what_ran_and_says_so():
    r = new(3)
    step_once(r, V3_OUTPUTS["begin"])
    step_once(r, V3_OUTPUTS["prepare"])
    r.cancel_requested = True
    step_once(r, V3_OUTPUTS["perform"])  # Perform ended, but the source still owns the VM
    assert (r.step.phase, r.step.cancelled) == ("finish", True)
    assert r.todo == [["confirm", True]]
    step_once(r, ok())
    assert (r.step.phase, r.step.cancelled) == ("confirm", True)
    step_once(r, ok())
    assert r.state == State.CANCELLED and r.vm_host == "src"
    assert r.error == {"code": "CANCELLED", "message": "the migration was cancelled on request"}


def test_a_cancel_after_the_handover_completes_the_migration():
    r = new(3)
    for phase in ("begin", "prepare", "perform"):
        step_once(r, V3_OUTPUTS[phase])
    r.cancel_requested = True
    step_once(r, V3_OUTPUTS["finish"])  # Finish3 handed the VM over: too late to undo
    assert r.vm_host == "dst" and r.step.phase == "confirm" and not r.step.cancelled
    step_once(r, ok())
    assert r.state == State.COMPLETED and r.error is None


def test_a_cancelled_failure_ends_cancelled_not_failed():
    r = new(3)
    step_once(r, V3_OUTPUTS["begin"])
    r.cancel_requested = True
    step_once(r, fail())  # Prepare failed while a cancel was asked: Confirm3(cancelled)
    step_once(r, ok())
    assert r.state == State.CANCELLED
    assert r.error == {"code": "CANCELLED", "message": "the migration was cancelled on request"}


def test_a_failed_confirm_rolls_forward_and_says_why():
    r = new(3)
    for phase in ("begin", "prepare", "perform", "finish"):
        step_once(r, V3_OUTPUTS[phase])
    step_once(r, fail("CONFIRM_BROKE"))
    assert r.step.phase == "destroy_source" and r.state == State.CONFIRM
    assert r.warnings == [
        "confirm on src failed (CONFIRM_BROKE happened); ending the source copy by force"
    ]
    step_once(r, fail("STILL_THERE"))
    assert r.state == State.FAILED and r.error["code"] == "STILL_THERE"
    assert r.warnings[-1] == "destroy_source on src failed: STILL_THERE happened"


def test_a_failed_compensation_keeps_the_first_error():
    r = new(3)
    for phase in ("begin", "prepare"):
        step_once(r, V3_OUTPUTS[phase])
    step_once(r, fail("LINK_DOWN"))  # Perform failed: Finish3(cancelled)
    step_once(r, fail("CLEANUP_FAILED"))
    assert r.state == State.FAILED and r.error["code"] == "LINK_DOWN"
    assert r.warnings == ["finish on dst failed: CLEANUP_FAILED happened"]


def test_no_usable_fallback_names_the_refusing_host_and_the_blocker():
    r = new(3, candidates=[3], dname="renamed")  # v2 was not offered (the destination lacks it)
    step_once(r, V3_OUTPUTS["begin"])
    step_once(r, fail("VERSION_UNSUPPORTED"))
    step_once(r, ok())  # Confirm3(cancelled), then nothing is left to try
    assert r.state == State.FAILED
    assert r.error["message"] == (
        "host dst refused protocol v3 and no older version both hosts support can carry this "
        "migration (protocol v1 cannot rename a domain (--dname))"
    )


def test_a_refusal_without_a_blocker_gives_no_reason():
    r = new(2, candidates=[2])
    step_once(r, fail("VERSION_UNSUPPORTED"))
    assert r.error["message"] == (
        "host src refused protocol v2 and no older version both hosts support can carry this "
        "migration"
    )


def test_a_destination_xml_blocks_every_fallback():
    r = new(3, candidates=[3], xml="<domain><name>vm</name></domain>")
    step_once(r, fail("VERSION_UNSUPPORTED"))
    assert r.error["message"] == (
        "host src refused protocol v3 and no older version both hosts support can carry this "
        "migration (protocol v2 cannot carry a destination XML (--xml); only v3 can)"
    )


def test_a_failed_compensation_still_runs_the_ones_after_it():
    """Cancelled after Prepare3: Finish3(cancelled) fails, Confirm3(cancelled) must still resume
    the source."""
    r = new(3)
    step_once(r, V3_OUTPUTS["begin"])
    r.cancel_requested = True
    step_once(r, V3_OUTPUTS["prepare"])
    assert (r.step.phase, r.step.cancelled, r.todo) == ("finish", True, [["confirm", True]])
    step_once(r, fail("NO_INCOMING"))
    assert (r.step.phase, r.step.cancelled) == ("confirm", True)
    step_once(r, ok())
    assert r.state == State.CANCELLED and r.vm_host == "src"


def test_offline_v3_keeps_the_vm_on_the_source_until_confirm():
    r = new(3, flags=["offline", "persist"])
    for phase in ("begin", "prepare", "finish"):
        step_once(r, V3_OUTPUTS[phase])
        assert r.vm_host == "src"
    assert r.step.phase == "confirm"
