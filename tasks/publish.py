"""Publishing: every vmigrate message goes out here, by task name, to an explicit queue.

Tasks never wait on each other's results: each one publishes the next and returns.
"""

from __future__ import annotations

from typing import Any

from broker.queues import DISPATCHER, host_queue
from tasks import flow
from tasks.protocol import Phase, Step
from tasks.record import MigrationRecord
from tasks.runtime import Runtime, runtime

PHASE_TASK = "vmigrate.host.phase"
POLL_TASK = "vmigrate.host.poll"
CONTROL_TASK = "vmigrate.host.control"
START_TASK = "vmigrate.dispatcher.start"
TICK_TASK = "vmigrate.dispatcher.tick"
SUBMIT_TASK = "vmigrate.submit"


def send(
    task: str,
    args: list[Any],
    queue: str,
    countdown: float | None = None,
    rt: Runtime | None = None,
) -> None:
    """Publish ``task`` to ``queue``, signed with the fleet's key (see broker/security.py)."""
    rt = rt or runtime()
    auth = rt.keyring.sign(task, queue, args, rt.settings.message_ttl)
    rt.app.send_task(task, args=args, kwargs={"auth": auth}, queue=queue, countdown=countdown)


def phase_message(record: MigrationRecord) -> dict[str, Any]:
    assert record.step is not None
    return {
        "migration": record.id,
        "attempt": record.attempt,
        "seq": record.step.seq,
        "phase": record.step.phase,
        "cancelled": record.step.cancelled,
    }


def publish_step(record: MigrationRecord) -> None:
    """Send the step in flight to the host that runs it."""
    assert record.step is not None
    step = Step(Phase(record.step.phase), record.step.cancelled)
    queue = host_queue(flow.host_of(record, step))
    send(PHASE_TASK, [phase_message(record)], queue)


FIRST_POLL = 0.025  # seconds; polls back off from here to ``poll_interval``


def poll_delay(poll: int, interval: float, seconds_left: float | None = None) -> float:
    """Pure: when to poll a transfer next. The first polls come soon (0.025, 0.05, 0.1 s), then
    every ``interval``; sooner when the transfer should end before that (``seconds_left``, from
    the bytes remaining and the rate since the last poll), because a v3 destination stays paused
    from the end of the copy until Finish resumes it."""
    delay = min(interval, FIRST_POLL * float(2 ** min(poll, 16)))
    if seconds_left is not None:
        delay = min(delay, max(FIRST_POLL, seconds_left))
    return delay


def seconds_left(before: dict[str, float], after: dict[str, float], elapsed: float) -> float | None:
    """Pure: the remaining bytes over the rate seen between two polls (None without a rate)."""
    sent = after.get("memory_processed", 0.0) - before.get("memory_processed", 0.0)
    if elapsed <= 0 or sent <= 0:
        return None
    return after.get("memory_remaining", 0.0) / (sent / elapsed)


def publish_poll(record: MigrationRecord, host: str, left: float | None = None) -> None:
    assert record.step is not None
    message = {**phase_message(record), "poll": record.step.poll}
    delay = poll_delay(record.step.poll, runtime().settings.poll_interval, left)
    send(POLL_TASK, [message], host_queue(host), countdown=delay)


def publish_poll_now(record: MigrationRecord, host: str) -> None:
    """A poll of the running transfer at once (its driver saw it end). Of two polls with one
    number only one acts (fencing.poll_matches), so the scheduled one then does nothing."""
    if record.step is None or record.step.phase != Phase.PERFORM.value:
        return
    if record.step.status != "polling":
        return  # not polling yet: Perform's own check or the first poll will see the end
    send(POLL_TASK, [{**phase_message(record), "poll": record.step.poll}], host_queue(host))


def publish_start(migration_id: str, rt: Runtime | None = None) -> None:
    send(START_TASK, [migration_id], DISPATCHER, rt=rt)
