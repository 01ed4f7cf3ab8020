"""The phases of each protocol version and the rollback matrix: pure tables, no I/O.

v1: Prepare (dst) -> Perform (src) -> Finish (dst)
v2: [dumpxml (src)] -> Prepare2 (dst, with XML) -> Perform (src) -> Finish2 (dst, cancelled?)
v3: Begin3 (src) -> Prepare3 (dst) -> Perform3 (src) -> Finish3 (dst) -> Confirm3 (src)

Who owns the VM: the source until Perform succeeds in v1/v2 (the source is killed inside Perform),
and until Finish succeeds in v3 (the source is only ended in Confirm).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tasks.states import State


class Phase(StrEnum):
    DUMPXML = "dumpxml"
    BEGIN = "begin"
    PREPARE = "prepare"
    PERFORM = "perform"
    FINISH = "finish"
    CONFIRM = "confirm"
    ABORT_INCOMING = "abort_incoming"  # v1 has no cancelled Finish: the driver cleans up
    DESTROY_SOURCE = "destroy_source"  # roll forward when Confirm could not end the source


SOURCE, DESTINATION = "source", "destination"
SIDE = {
    Phase.DUMPXML: SOURCE,
    Phase.BEGIN: SOURCE,
    Phase.PREPARE: DESTINATION,
    Phase.PERFORM: SOURCE,
    Phase.FINISH: DESTINATION,
    Phase.CONFIRM: SOURCE,
    Phase.ABORT_INCOMING: DESTINATION,
    Phase.DESTROY_SOURCE: SOURCE,
}

SEQUENCE: dict[int, tuple[Phase, ...]] = {
    1: (Phase.PREPARE, Phase.PERFORM, Phase.FINISH),
    2: (Phase.DUMPXML, Phase.PREPARE, Phase.PERFORM, Phase.FINISH),
    3: (Phase.BEGIN, Phase.PREPARE, Phase.PERFORM, Phase.FINISH, Phase.CONFIRM),
}

#: The phase whose success hands the VM to the destination.
HANDOVER = {1: Phase.PERFORM, 2: Phase.PERFORM, 3: Phase.FINISH}


@dataclass(frozen=True)
class Step:
    phase: Phase
    cancelled: bool = False

    @property
    def side(self) -> str:
        return SIDE[self.phase]

    @property
    def compensating(self) -> bool:
        return self.cancelled or self.phase in (Phase.ABORT_INCOMING, Phase.DESTROY_SOURCE)

    def state(self) -> State:
        if self.phase == Phase.DESTROY_SOURCE:
            return State.CONFIRM
        if self.compensating:
            return State.ROLLBACK
        return State(self.phase.value)


#: After a failure in (version, phase): the compensating step, or None when nothing is left to undo.
ROLLBACK: dict[tuple[int, Phase], Step | None] = {
    (1, Phase.PREPARE): None,
    (1, Phase.PERFORM): Step(Phase.ABORT_INCOMING),
    (1, Phase.FINISH): None,  # the destination already owns the VM
    (2, Phase.DUMPXML): None,
    (2, Phase.PREPARE): None,
    (2, Phase.PERFORM): Step(Phase.FINISH, cancelled=True),
    (2, Phase.FINISH): None,  # Finish2 leaves the guest paused on the destination
    (3, Phase.BEGIN): None,
    (3, Phase.PREPARE): Step(Phase.CONFIRM, cancelled=True),  # ends the job Begin took
    (3, Phase.PERFORM): Step(Phase.FINISH, cancelled=True),  # the source resumed itself
    (3, Phase.FINISH): Step(Phase.CONFIRM, cancelled=True),  # resume the source
    (3, Phase.CONFIRM): Step(Phase.DESTROY_SOURCE),  # roll forward: the destination runs it
}


#: Cancelling after (version, phase) succeeded, before the VM was handed over: what to undo.
CANCEL_AFTER: dict[tuple[int, Phase], tuple[Step, ...]] = {
    (1, Phase.PREPARE): (Step(Phase.ABORT_INCOMING),),
    (2, Phase.DUMPXML): (),
    (2, Phase.PREPARE): (Step(Phase.FINISH, cancelled=True),),
    (3, Phase.BEGIN): (Step(Phase.CONFIRM, cancelled=True),),
    (3, Phase.PREPARE): (Step(Phase.FINISH, cancelled=True), Step(Phase.CONFIRM, cancelled=True)),
    (3, Phase.PERFORM): (Step(Phase.FINISH, cancelled=True), Step(Phase.CONFIRM, cancelled=True)),
}


def first_step(version: int) -> Step:
    return Step(SEQUENCE[version][0])


def next_step(version: int, done: Phase, offline: bool = False) -> Step | None:
    """The step after ``done`` succeeded, or None when the migration is complete."""
    sequence = SEQUENCE[version]
    following = sequence[sequence.index(done) + 1 :]
    if offline and following and following[0] == Phase.PERFORM:
        following = following[1:]  # offline migration skips Perform
    return Step(following[0]) if following else None


def rollback_step(version: int, failed: Phase) -> Step | None:
    return ROLLBACK[(version, failed)]


def cancel_steps(version: int, done: Phase) -> tuple[Step, ...] | None:
    """What undoes a migration cancelled once ``done`` succeeded; None when it is too late."""
    return CANCEL_AFTER.get((version, done))


def hands_over(version: int, phase: Phase, offline: bool = False) -> bool:
    """Whether success of ``phase`` makes the destination the VM's owner."""
    return not offline and HANDOVER[version] == phase
