"""Migration states, and the transitions allowed between them, written beside the enum."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    QUEUED = "queued"  # waiting for its window or its not-before time
    WAITING = "waiting"  # window open, admission limits full
    PENDING = "pending"  # accepted, about to start its first phase
    DUMPXML = "dumpxml"  # v2: reading the source's domain XML
    BEGIN = "begin"
    PREPARE = "prepare"
    PERFORM = "perform"
    FINISH = "finish"
    CONFIRM = "confirm"
    ROLLBACK = "rollback"  # compensating phases after a failure (Finish/Confirm cancelled)
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


TERMINAL = frozenset({State.COMPLETED, State.FAILED, State.CANCELLED, State.EXPIRED})
_ABORTED = {State.ROLLBACK, State.FAILED, State.CANCELLED}
_RESTART = {State.PENDING, State.DUMPXML, State.BEGIN, State.PREPARE}  # fallback to another version

TRANSITIONS: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset({State.WAITING, State.PENDING, State.CANCELLED, State.EXPIRED}),
    State.WAITING: frozenset({State.QUEUED, State.PENDING, State.CANCELLED, State.EXPIRED}),
    State.PENDING: frozenset({State.DUMPXML, State.BEGIN, State.PREPARE} | _ABORTED),
    State.DUMPXML: frozenset({State.PREPARE} | _ABORTED | _RESTART),
    State.BEGIN: frozenset({State.PREPARE} | _ABORTED | _RESTART),
    State.PREPARE: frozenset({State.PERFORM, State.FINISH} | _ABORTED | _RESTART),
    State.PERFORM: frozenset({State.FINISH} | _ABORTED),
    State.FINISH: frozenset({State.CONFIRM, State.COMPLETED} | _ABORTED),
    State.CONFIRM: frozenset({State.CONFIRM, State.COMPLETED} | _ABORTED),
    State.ROLLBACK: frozenset({State.ROLLBACK} | _ABORTED | _RESTART),
    State.COMPLETED: frozenset(),
    State.FAILED: frozenset(),
    State.CANCELLED: frozenset(),
    State.EXPIRED: frozenset(),
}


class InvalidTransition(RuntimeError):
    pass


def check_transition(old: State, new: State) -> State:
    if new != old and new not in TRANSITIONS[old]:
        raise InvalidTransition(f"migration state cannot go from {old} to {new}")
    return new
