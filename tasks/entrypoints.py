"""The Celery tasks: thin, like web views. They take ids and plain JSON and call plain functions.

Task names are the documented interface for applications that speak to the broker directly:
``vmigrate.submit`` takes one JSON object (see ``tasks.submission.MigrationRequest``).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from broker.app import get_app
from tasks import control, dispatcher, phases, scheduler, submission
from tasks.errors import Refused
from tasks.publish import (
    CONTROL_TASK,
    PHASE_TASK,
    POLL_TASK,
    START_TASK,
    SUBMIT_TASK,
    TICK_TASK,
)

log = logging.getLogger(__name__)
app = get_app()


def _redelivered(task: Task) -> bool:
    info = task.request.delivery_info or {}
    return bool(info.get("redelivered"))


@app.task(name=PHASE_TASK, bind=True)
def phase(self: Task, message: dict[str, Any]) -> str:
    return phases.run_phase(message, redelivered=_redelivered(self))


@app.task(name=POLL_TASK)
def poll(message: dict[str, Any]) -> str:
    return phases.run_poll(message)


@app.task(name=CONTROL_TASK)
def host_control(request_id: str, action: str, args: dict[str, Any]) -> None:
    control.run_control(request_id, action, args)


@app.task(name=START_TASK)
def start(migration_id: str) -> str:
    return dispatcher.start_migration(migration_id)


@app.task(name=TICK_TASK)
def tick() -> dict[str, int] | None:
    """Release queued migrations now (sent when a slot frees up); skipped if one just ran."""
    if not scheduler.tick_lock():
        return None
    return scheduler.tick()


@app.task(name=SUBMIT_TASK)
def submit(request: dict[str, Any]) -> dict[str, Any]:
    """For other applications: submit a migration. Refusals are logged, never retried."""
    try:
        record = submission.submit(submission.MigrationRequest.from_dict(request))
    except Refused as exc:
        log.warning("refused migration request %s: %s", request, exc.message)
        return {"error": exc.as_dict()}
    return {"id": record.id}
