"""How a migration moves when a phase ends: a pure function of the record and the phase's outcome.

This is the libvirt client's role (virDomainMigrateVersion1/2/3Full): it owns the ``cancelled``
decision, picks the compensating phase from the rollback matrix, falls back to an older protocol
when a host refuses a version, and records where the VM lives. No I/O happens here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tasks import protocol
from tasks.negotiation import Wants, fallback, why_not
from tasks.protocol import Phase, Step
from tasks.record import MigrationRecord, PhaseRun, StepState, now_iso
from tasks.states import State
from workers.drivers.base import OFFLINE, PAUSED

VERSION_UNSUPPORTED = "VERSION_UNSUPPORTED"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    outputs: dict[str, Any] = field(default_factory=dict)
    error: dict[str, str] | None = None


def host_of(record: MigrationRecord, step: Step) -> str:
    return record.source if step.side == protocol.SOURCE else record.destination


def send_step(record: MigrationRecord, step: Step) -> Step:
    """Make ``step`` the one phase in flight (the caller publishes its message)."""
    seq = record.step.seq + 1 if record.step else 1
    record.step = StepState(seq=seq, phase=step.phase.value, cancelled=step.cancelled)
    record.move_to(step.state())
    return step


def start_attempt(record: MigrationRecord, version: int) -> Step:
    """Begin (or restart, after a fallback) the protocol at ``version``."""
    record.protocol = version
    record.attempt += 1
    record.fallback_to = None
    record.exchange = {k: v for k, v in record.exchange.items() if k == "source_state"}
    return send_step(record, protocol.first_step(version))


def open_phase(record: MigrationRecord, host: str) -> None:
    """Record that the step in flight started running on ``host``."""
    assert record.step is not None and record.protocol is not None
    record.step.status = "running"
    record.step.touched = time.time()
    record.phases.append(
        PhaseRun(record.step.phase, host, record.protocol, record.step.cancelled, now_iso())
    )


def _close_phase(record: MigrationRecord, outcome: Outcome) -> None:
    run = record.phases[-1]
    run.ended = now_iso()
    run.outcome = "ok" if outcome.ok else "failed"
    run.error = outcome.error
    assert record.step is not None
    record.step.status = "done"


def _terminal(record: MigrationRecord, state: State) -> None:
    record.move_to(state)
    record.step = None


def _absorb(record: MigrationRecord, phase: Phase, outputs: dict[str, Any]) -> None:
    ex = record.exchange
    for key in ("cookie", "uri"):
        if outputs.get(key) is not None:
            ex[key] = outputs[key]
    if phase in (Phase.BEGIN, Phase.DUMPXML):
        ex["dom_xml"] = outputs["xml"]
        ex["source_state"] = outputs.get("state")
    if phase == Phase.PERFORM and outputs.get("progress"):
        record.progress = outputs["progress"]


def advance(record: MigrationRecord, outcome: Outcome) -> Step | None:
    """Apply a finished phase to ``record``; return the next step to publish, if any."""
    assert record.step is not None and record.protocol is not None
    step = Step(Phase(record.step.phase), record.step.cancelled)
    _close_phase(record, outcome)
    if outcome.ok:
        return _after_success(record, step, outcome)
    return _after_failure(record, step, outcome)


CANCELLED_ERROR = {"code": "CANCELLED", "message": "the migration was cancelled on request"}


def _end_unsuccessfully(record: MigrationRecord) -> None:
    _terminal(record, State.CANCELLED if record.cancel_requested else State.FAILED)


def compensate(record: MigrationRecord, steps: tuple[Step, ...] | list[Step]) -> Step | None:
    """Run ``steps`` one after another (each is sent when the previous one ended)."""
    if not steps:
        if record.fallback_to is not None:
            return start_attempt(record, record.fallback_to)
        _end_unsuccessfully(record)
        return None
    first, *rest = steps
    record.todo = [[s.phase.value, s.cancelled] for s in rest]
    return send_step(record, first)


def _after_success(record: MigrationRecord, step: Step, outcome: Outcome) -> Step | None:
    version = record.protocol
    assert version is not None
    offline = OFFLINE in record.flags
    _absorb(record, step.phase, outcome.outputs)
    if step.compensating:
        return _after_compensation(record, step)
    if protocol.hands_over(version, step.phase, offline):
        record.vm_host = record.destination
    if record.cancel_requested and record.vm_host == record.source:
        undo = protocol.cancel_steps(version, step.phase)
        if undo is not None:
            record.error = CANCELLED_ERROR
            return compensate(record, undo)
    following = protocol.next_step(version, step.phase, offline)
    if following is None:
        _terminal(record, State.COMPLETED)
        return None
    return send_step(record, following)


def _remaining(record: MigrationRecord) -> list[Step]:
    return [Step(Phase(p), bool(c)) for p, c in record.todo]


def _after_compensation(record: MigrationRecord, step: Step) -> Step | None:
    if step.phase == Phase.DESTROY_SOURCE:
        _terminal(record, State.COMPLETED)
        return None
    return compensate(record, _remaining(record))


def _after_failure(record: MigrationRecord, step: Step, outcome: Outcome) -> Step | None:
    version = record.protocol
    assert version is not None and outcome.error is not None
    error = outcome.error
    host = host_of(record, step)
    if step.compensating:
        record.warnings.append(f"{step.phase.value} on {host} failed: {error['message']}")
        if step.phase == Phase.DESTROY_SOURCE:
            record.error = record.error or error
        record.fallback_to = None
        return compensate(record, _remaining(record))
    if step.phase == Phase.CONFIRM:
        # Finish succeeded: the destination runs the VM. Never roll back now; end the source.
        record.warnings.append(
            f"confirm on {host} failed ({error['message']}); ending the source copy by force"
        )
        return send_step(record, Step(Phase.DESTROY_SOURCE))
    if error["code"] == VERSION_UNSUPPORTED and not record.cancel_requested:
        record.fallback_to = _choose_fallback(record, version, host)
    if record.fallback_to is None and record.error is None:
        record.error = CANCELLED_ERROR if record.cancel_requested else error
    compensation = protocol.rollback_step(version, step.phase)
    return compensate(record, [compensation] if compensation else [])


def _choose_fallback(record: MigrationRecord, refused: int, host: str) -> int | None:
    """The next common version after ``host`` refused ``refused``; sets a clear error if none."""
    wants = Wants.of(record.dname, record.xml, frozenset(record.flags))
    lower = fallback(record.candidates, refused)
    if lower is not None:
        record.warnings.append(
            f"host {host} refused protocol v{refused} (its registration was stale); "
            f"falling back to v{lower}"
        )
        return lower
    blockers = [why_not(v, wants) for v in range(refused - 1, 0, -1)]
    reason = next((f" ({b[1]})" for b in blockers if b is not None), "")
    record.error = {
        "code": VERSION_UNSUPPORTED,
        "message": f"host {host} refused protocol v{refused} and no older version both hosts "
        f"support can carry this migration{reason}",
    }
    return None


def dest_paused(record: MigrationRecord) -> bool:
    return PAUSED in record.flags or record.exchange.get("source_state") == "paused"
