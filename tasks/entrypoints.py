"""The Celery tasks: thin, like web views. They take ids and plain JSON and call plain functions.

Every task verifies its message's signature, expiry, single-use id and target queue before it does
anything (broker/security.py); an unauthentic message is logged and dropped.

These tasks are vmigrate's own interface between its components, not one for applications
(which use the REST API): ``vmigrate.submit`` takes one JSON object
(``tasks.submission.MigrationRequest``), signed with the fleet's key (``tasks.publish.send``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from celery import Task

from broker.app import get_app
from broker.security import Unauthentic
from tasks import dispatcher, host_commands, metrics, phases, submission, ticker
from tasks.errors import Refused
from tasks.logs import migration_context
from tasks.publish import (
    CONTROL_TASK,
    PHASE_TASK,
    POLL_TASK,
    START_TASK,
    SUBMIT_TASK,
    TICK_TASK,
)
from tasks.runtime import runtime

log = logging.getLogger(__name__)
app = get_app()
REFUSED = "refused: unauthentic message"


def authentic(body: Callable[..., Any]) -> Callable[..., Any]:
    """Verify the message before ``body`` runs; refuse it (and log why) otherwise."""

    @functools.wraps(body)
    def checked(self: Task, *args: Any, auth: Any = None) -> Any:
        queue = (self.request.delivery_info or {}).get("routing_key", "")
        try:
            runtime().keyring.verify(self.name, queue, list(args), auth, runtime().redis)
        except Unauthentic as reason:
            log.warning("refused %s on %s (id %s): %s", self.name, queue, self.request.id, reason)
            metrics.REFUSED.labels(self.name).inc()
            return REFUSED
        return body(self, *args)

    return checked


def _redelivered(task: Task) -> bool:
    return bool((task.request.delivery_info or {}).get("redelivered"))


def _queue(task: Task) -> str:
    """The queue a message came from: names the host when one worker serves several."""
    return str((task.request.delivery_info or {}).get("routing_key") or "")


@app.task(name=PHASE_TASK, bind=True)
@authentic
def phase(self: Task, message: dict[str, Any]) -> str:
    with migration_context(message["migration"]):
        return phases.run_phase(message, redelivered=_redelivered(self), queue=_queue(self))


@app.task(name=POLL_TASK, bind=True)
@authentic
def poll(self: Task, message: dict[str, Any]) -> str:
    with migration_context(message["migration"]):
        return phases.run_poll(message, queue=_queue(self))


@app.task(name=CONTROL_TASK, bind=True)
@authentic
def host_control(self: Task, request_id: str, action: str, args: dict[str, Any]) -> None:
    host_commands.run_control(request_id, action, args, queue=_queue(self))


@app.task(name=START_TASK, bind=True)
@authentic
def start(self: Task, migration_id: str) -> str:
    with migration_context(migration_id):
        return dispatcher.start_migration(migration_id)


@app.task(name=TICK_TASK, bind=True)
@authentic
def tick(self: Task) -> dict[str, int] | None:
    """Release queued migrations now (sent when a slot frees up); coalesces with a running one."""
    return {"ticks": ticker.tick_soon()}


@app.task(name=SUBMIT_TASK, bind=True)
@authentic
def submit(self: Task, request: dict[str, Any]) -> dict[str, Any]:
    """For other applications: submit a migration. A refusal is logged, never retried, and kept
    under the request's id (a ``failed`` record with the refusal's code) for the sender to read."""
    try:
        record = submission.submit(submission.MigrationRequest.from_dict(request))
    except Refused as exc:
        log.warning("refused migration request: %s", exc.message)
        submission.record_refusal(request, exc)
        return {"error": exc.as_dict()}
    return {"id": record.id}
