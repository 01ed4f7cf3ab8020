"""Running one phase on its host: claim it on the record, call the driver, hand over the result.

Each phase is fenced (tasks/fencing.py): the message names (migration, attempt, seq, phase,
cancelled); the host claims the step on the record with a compare-and-set before acting, so a stale
message or a second copy does nothing. The driver's phase methods are themselves idempotent per
migration id, so a message redelivered after a crash mid-phase may safely run the phase again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from tasks import fencing, flow, metrics
from tasks.crashpoints import maybe_crash
from tasks.ending import finished
from tasks.fencing import Verdict
from tasks.hostside import HostContext, current_host, job_for
from tasks.protocol import Phase, Step
from tasks.publish import publish_poll, publish_step, seconds_left
from tasks.record import MigrationRecord
from tasks.runtime import runtime
from workers.drivers.base import OFFLINE, DriverError, MigrationJob, TransferStatus

log = logging.getLogger(__name__)


def _claim(
    record: MigrationRecord, message: dict[str, Any], host: str, retry: bool, seen: list[Verdict]
) -> bool | None:
    """Open the step on ``record`` if the message may act; ``seen`` gets the verdict."""
    verdict = fencing.claim(record, message, host, retry)
    seen.append(verdict)
    if verdict == Verdict.CLAIM:
        flow.open_phase(record, host)
    elif verdict == Verdict.RERUN:
        assert record.step is not None
        record.step.touched = time.time()
    return True if verdict.acts else None


def _ignored(message: dict[str, Any], verdict: Verdict) -> str:
    """Count and log a phase message that changed nothing, by why."""
    metrics.IGNORED.labels(verdict.value).inc()
    log.info("ignoring %s phase message %s", verdict.value, message)
    return "ignored"


def run_phase(message: dict[str, Any], redelivered: bool = False, queue: str = "") -> str:
    """Entry point of the phase task on a host. Returns what happened, for logs and tests."""
    ctx = current_host(queue)
    retry = redelivered or bool(message.get("retry", False))
    seen: list[Verdict] = []
    claimed = runtime().store.update(
        message["migration"], lambda r: _claim(r, message, ctx.host, retry, seen)
    )
    if claimed is None:  # the verdict on the record as last read (none: no such record)
        return _ignored(message, seen[-1] if seen else Verdict.UNKNOWN)
    record = claimed[0]
    written = record.to_json()  # what the record holds now, unless someone changes it meanwhile
    phase = Phase(message["phase"])
    point = phase.value + ("(c)" if message["cancelled"] else "")
    maybe_crash(f"{point}:before")
    began = time.monotonic()
    outcome = _execute(ctx, record, phase, message["cancelled"])
    metrics.phase_done(phase.value, record.protocol, outcome.ok, time.monotonic() - began)
    log.info(
        "%s (v%s) on %s: %s",
        point,
        record.protocol,
        ctx.host,
        "ok" if outcome.ok else (outcome.error or {}).get("message"),
    )
    maybe_crash(f"{point}:after")
    if phase == Phase.PERFORM and outcome.ok and not message["cancelled"]:
        transferred = _transfer_outcome(ctx, job_for(record, phase))
        if transferred is None:  # still copying: poll it from now on
            ctx.publish_inventory()
            _start_polling(record, message, ctx.host, written)
            return "ok"
        outcome = transferred  # a transfer that already ended needs no poll
    ctx.publish_inventory()  # before the record moves on, so readers never see it stale
    complete(record.id, message["seq"], outcome, written)
    return "ok" if outcome.ok else "failed"


def _execute(
    ctx: HostContext, record: MigrationRecord, phase: Phase, cancelled: bool
) -> flow.Outcome:
    assert record.protocol is not None
    job = job_for(record, phase)
    if not Step(phase, cancelled).compensating and record.protocol not in ctx.protocols:
        return _failure(
            "VERSION_UNSUPPORTED",
            f"host {ctx.host} does not support migration protocol v{record.protocol} "
            f"(it supports {sorted(ctx.protocols)})",
        )
    try:
        outputs = DRIVER_CALLS[phase](ctx, job, record, cancelled)
    except DriverError as exc:
        return _failure(exc.code, str(exc))
    except ValueError as exc:  # invalid XML or knobs that reached the driver
        return _failure(getattr(exc, "code", "INVALID_INPUT"), str(exc))
    except Exception as exc:  # no declared kind: see _unexpected
        return _unexpected(ctx, phase, exc)
    return flow.Outcome(True, outputs)


def _failure(code: str, message: str) -> flow.Outcome:
    return flow.Outcome(False, error={"code": code, "message": message})


def _unexpected(ctx: HostContext, phase: Phase, exc: Exception) -> flow.Outcome:
    """A driver raised what it does not declare (a bug, a library's surprise). Sent again, the
    phase would raise again for ever and the migration never end: it fails instead, and the
    rollback the fault matrix proves for every phase takes over. The traceback is logged."""
    error = _unexpected_error(ctx, phase, exc)
    return _failure(error.code, str(error))


def _unexpected_error(ctx: HostContext, phase: Phase, exc: Exception) -> DriverError:
    log.error("%s on %s raised unexpectedly", phase.value, ctx.host, exc_info=exc)
    message = f"{phase.value} failed on {ctx.host} with an unexpected {type(exc).__name__}: {exc}"
    return DriverError(message, "DRIVER_FAILED")


def _transfer_status(ctx: HostContext, job: MigrationJob, abort: bool = False) -> TransferStatus:
    """The outgoing transfer now (aborted first if asked): a driver error of any kind ends it,
    as a failed transfer, rather than leaving the poll to meet it again for ever."""
    try:
        if abort:
            ctx.driver.abort_outgoing(job)
        return ctx.driver.perform_status(job)
    except DriverError as exc:
        return TransferStatus(True, error=exc)
    except Exception as exc:  # no declared kind: see _unexpected
        return TransferStatus(True, error=_unexpected_error(ctx, Phase.PERFORM, exc))


def _start_polling(
    record: MigrationRecord, message: dict[str, Any], host: str, written: str
) -> None:
    def mark(r: MigrationRecord) -> bool | None:
        if not fencing.matches(r, message, "running"):
            return None
        assert r.step is not None
        r.step.status, r.step.poll, r.step.touched = "polling", 0, time.time()
        return True

    marked = runtime().store.update(record.id, mark, written)
    if marked:
        publish_poll(marked[0], host)


def run_poll(message: dict[str, Any], queue: str = "") -> str:
    """Poll an outgoing transfer once; republish the poll, or complete Perform."""
    ctx = current_host(queue)
    record = runtime().store.get(message["migration"])
    if record is None or not fencing.poll_matches(record, message):
        return "ignored"
    job = job_for(record, Phase.PERFORM)
    maybe_crash("poll")
    status = _transfer_status(ctx, job, abort=record.cancel_requested)
    outcome = _ended_transfer(status)
    if outcome is None:

        def bump(r: MigrationRecord) -> float | None:
            if not fencing.poll_matches(r, message) or r.step is None:
                return None
            now = time.time()
            left = seconds_left(r.progress, status.progress, now - r.step.touched)
            r.step.poll += 1
            r.step.touched = now
            r.progress = status.progress or r.progress  # nothing new: keep the last
            return left if left is not None else -1.0

        bumped = runtime().store.update(record.id, bump)
        if bumped:
            publish_poll(bumped[0], ctx.host, bumped[1] if bumped[1] >= 0 else None)
        return "polling"
    ctx.publish_inventory()
    complete(record.id, message["seq"], outcome)
    return "done"


def _transfer_outcome(ctx: HostContext, job: MigrationJob) -> flow.Outcome | None:
    """Perform's outcome if its transfer has ended, None while it still runs."""
    return _ended_transfer(_transfer_status(ctx, job))


def _ended_transfer(status: TransferStatus) -> flow.Outcome | None:
    if not status.done:
        return None
    if status.error is not None:
        return _failure(status.error.code, str(status.error))
    metrics.BYTES.inc(status.progress.get("transferred", 0))
    return flow.Outcome(True, {"cookie": status.cookie, "progress": status.progress})


def complete(
    migration_id: str, seq: int, outcome: flow.Outcome, written: str | None = None
) -> None:
    """Apply a phase outcome to the record and publish whatever comes next."""

    def apply(r: MigrationRecord) -> tuple[Any] | None:
        if not fencing.completes(r, seq):
            return None
        return (flow.advance(r, outcome),)

    applied = runtime().store.update(migration_id, apply, written)
    if applied is None:
        return
    record, (following,) = applied
    if following is not None:
        publish_step(record)
    elif record.terminal:
        metrics.MIGRATIONS.labels(record.state, str(record.protocol or "")).inc()
        finished(record)


# The driver call of each phase: (context, job, record, cancelled) -> outputs for the record.
def _dumpxml(ctx: HostContext, job: MigrationJob, r: MigrationRecord, _: bool) -> dict[str, Any]:
    state = next((d.state for d in ctx.driver.list_domains() if d.name == job.domain), None)
    return {"xml": ctx.driver.domain_xml(job.domain), "state": state}


def _begin(ctx: HostContext, job: MigrationJob, r: MigrationRecord, _: bool) -> dict[str, Any]:
    result = ctx.driver.begin(job, r.xml)
    return {"xml": result.xml, "cookie": result.cookie, "state": result.state}


def _prepare(ctx: HostContext, job: MigrationJob, r: MigrationRecord, _: bool) -> dict[str, Any]:
    cookie = r.exchange.get("cookie") if job.version == 3 else None
    dom_xml = None if job.version == 1 else r.exchange["dom_xml"]
    result = ctx.driver.prepare(job, cookie, dom_xml)
    return {"uri": result.uri, "cookie": result.cookie}


def _perform(ctx: HostContext, job: MigrationJob, r: MigrationRecord, _: bool) -> dict[str, Any]:
    ctx.driver.perform(job, r.exchange.get("cookie"), r.exchange["uri"])
    return {}


def _finish(
    ctx: HostContext, job: MigrationJob, r: MigrationRecord, cancelled: bool
) -> dict[str, Any]:
    # v2 has no Finish cookie; an offline v3 Finish gets none either (libvirt's client throws
    # Prepare's away when it skips Perform).
    offline = OFFLINE in job.flags
    cookie = None if job.version == 2 or offline else r.exchange.get("cookie")
    return {"cookie": ctx.driver.finish(job, cookie, cancelled)}


def _confirm(
    ctx: HostContext, job: MigrationJob, r: MigrationRecord, cancelled: bool
) -> dict[str, Any]:
    ctx.driver.confirm(job, r.exchange.get("cookie"), cancelled)
    return {}


def _abort_incoming(
    ctx: HostContext, job: MigrationJob, r: MigrationRecord, _: bool
) -> dict[str, Any]:
    ctx.driver.abort_incoming(job)
    return {}


def _destroy_source(
    ctx: HostContext, job: MigrationJob, r: MigrationRecord, _: bool
) -> dict[str, Any]:
    ctx.driver.destroy_source(job)
    return {}


DRIVER_CALLS: dict[
    Phase, Callable[[HostContext, MigrationJob, MigrationRecord, bool], dict[str, Any]]
] = {
    Phase.DUMPXML: _dumpxml,
    Phase.BEGIN: _begin,
    Phase.PREPARE: _prepare,
    Phase.PERFORM: _perform,
    Phase.FINISH: _finish,
    Phase.CONFIRM: _confirm,
    Phase.ABORT_INCOMING: _abort_incoming,
    Phase.DESTROY_SOURCE: _destroy_source,
}
