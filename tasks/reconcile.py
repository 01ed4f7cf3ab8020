"""Reconciliation when a host worker starts: settle what an interrupted migration left behind.

For each unfinished migration job the driver still has, look at the migration record. If the
migration has ended, make the local state agree with it: the VM lives where ``vm_host`` says, so an
outgoing copy is resumed (the VM stayed here) or ended (the destination has it), and an incoming one
is removed unless it became the VM. A migration still running is left to its own messages and to
the sweeper, which drive it forward or roll it back.
"""

from __future__ import annotations

import logging

from tasks.hostside import HostContext
from tasks.runtime import runtime
from workers.drivers.base import DriverError, MigrationJob

log = logging.getLogger(__name__)


def reconcile(ctx: HostContext) -> dict[str, str]:
    done: dict[str, str] = {}
    for migration_id, job_info in ctx.driver.migration_jobs().items():
        record = runtime().store.get(migration_id)
        if record is not None and not record.terminal:
            done[migration_id] = "running: left to the protocol"
            continue
        owner = record.vm_host if record else None
        job = MigrationJob(
            migration_id,
            record.protocol or 3 if record else 3,
            job_info["domain"],
            record.source if record else ctx.host,
            record.destination if record else ctx.host,
        )
        try:
            done[migration_id] = _settle(ctx, job, job_info["role"], owner)
        except DriverError as exc:
            done[migration_id] = f"could not settle: {exc}"
        log.warning("reconciled migration %s on %s: %s", migration_id, ctx.host, done[migration_id])
    ctx.publish_inventory(always=True)
    return done


def _settle(ctx: HostContext, job: MigrationJob, role: str, owner: str | None) -> str:
    if role == "outgoing":
        if owner in (None, ctx.host):
            ctx.driver.confirm(job, None, cancelled=True)
            return "source copy resumed: the VM stayed here"
        ctx.driver.destroy_source(job)
        return f"source copy ended: the VM runs on {owner}"
    ctx.driver.abort_incoming(job)
    return "half-received incoming VM removed"
