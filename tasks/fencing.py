"""Fencing: whether a phase or poll message may act on the record as it stands. Pure functions.

A phase message names ``(migration, attempt, seq, phase, cancelled)``. It acts only if that token
is the step in flight: the record's ``attempt`` (bumped when a protocol fallback restarts the
sequence), the step's ``seq`` (one more for every step sent), and the step's phase and cancelled
flag. A message that differs in any of them is **stale** (an earlier attempt or step, or one that
was never sent for this step) and does nothing, whatever the step's status. A message whose token
matches but whose step is no longer claimable is a **duplicate** (a second copy, or one that came
after the step ran) and does nothing either. The reason is counted, so an operator sees fencing at
work (``vmigrate_phase_messages_ignored_total``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tasks import flow
from tasks.protocol import Phase, Step
from tasks.record import MigrationRecord


class Verdict(StrEnum):
    """What a phase message may do: act on the step, or nothing (and why)."""

    CLAIM = "claim"  # the step was sent and this host runs it now
    RERUN = "rerun"  # our own earlier copy died mid-phase: run it again (the driver is idempotent)
    UNKNOWN = "unknown"  # no such migration (expired, or never existed)
    STALE = "stale"  # the token is not the step in flight
    DUPLICATE = "duplicate"  # the token matches, the step is not claimable any more
    WRONG_HOST = "wrong-host"  # delivered to a host that does not run this step

    @property
    def acts(self) -> bool:
        return self in (Verdict.CLAIM, Verdict.RERUN)


def stale(record: MigrationRecord, message: dict[str, Any]) -> bool:
    """Whether ``message`` names something other than the step in flight."""
    step = record.step
    return (
        step is None
        or record.attempt != message["attempt"]
        or step.seq != message["seq"]
        or step.phase != message["phase"]
        or step.cancelled != bool(message["cancelled"])
    )


def matches(record: MigrationRecord, message: dict[str, Any], *statuses: str) -> bool:
    """The message is the step in flight, and the step is in one of ``statuses``."""
    return not stale(record, message) and record.step is not None and record.step.status in statuses


def claim(
    record: MigrationRecord | None,
    message: dict[str, Any],
    host: str,
    retry: bool,
) -> Verdict:
    """The verdict for a phase message arriving on ``host``.

    ``retry``: the message is a redelivery, or the sweeper's retry of a step that was running."""
    if record is None:
        return Verdict.UNKNOWN
    if stale(record, message):
        return Verdict.STALE
    assert record.step is not None
    if flow.host_of(record, Step(Phase(record.step.phase))) != host:  # its side: by phase
        return Verdict.WRONG_HOST
    if record.step.status == "sent":
        return Verdict.CLAIM
    ran_here = bool(record.phases) and record.phases[-1].host == host
    if retry and record.step.status == "running" and ran_here:
        return Verdict.RERUN
    return Verdict.DUPLICATE


def poll_matches(record: MigrationRecord | None, message: dict[str, Any]) -> bool:
    """A poll acts only on the polling step it was scheduled for, and only once per number."""
    return (
        record is not None
        and matches(record, message, "polling")
        and record.step is not None
        and record.step.poll == message["poll"]
    )


def completes(record: MigrationRecord, seq: int) -> bool:
    """An outcome applies only to the step ``seq`` while it runs or polls."""
    return (
        record.step is not None
        and record.step.seq == seq
        and record.step.status in ("running", "polling")
    )
