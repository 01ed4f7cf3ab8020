"""The libvirt driver's source side: Begin checks and takes the job, Perform starts libvirt's
peer-to-peer migration on a thread the worker owns, polls read ``jobStats``, Confirm checks.

How a migration ended is read from libvirt, not from the thread alone (nova's ``find_job_type``):
once libvirt has no job on the domain, a source domain still active means the migration failed
(the VM stayed here), an inactive one means the destination has it. So a worker restarted
mid-migration, which lost its thread, still learns the outcome: the job lives on in libvirtd.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from workers import domxml
from workers.cookie import CookieDisk
from workers.disks import Disk
from workers.drivers.base import (
    OFFLINE,
    POSTCOPY,
    UNDEFINE_SOURCE,
    BeginResult,
    DriverError,
    JobBusy,
    MigrationJob,
    TransferStatus,
)
from workers.drivers.libvirt import mapping, storage
from workers.drivers.libvirt.base import LibvirtBase, LibvirtConfig, libvirt_error
from workers.drivers.libvirt.binding import libvirt

log = logging.getLogger(__name__)


@dataclass
class Run:
    """One ``migrateToURI3`` call on its thread."""

    thread: threading.Thread | None = None
    error: DriverError | None = None
    stats: dict[str, int] = field(default_factory=dict)
    done: bool = False


class LibvirtSource(LibvirtBase):
    def __init__(self, config: LibvirtConfig) -> None:
        super().__init__(config)
        self._runs: dict[str, Run] = {}  # migration id -> its migrateToURI3 call, this process

    def _run_of(self, migration_id: str) -> Run | None:
        return self._runs.get(migration_id)

    # Begin -----------------------------------------------------------------------------------
    def begin(self, job: MigrationJob, xmlin: str | None) -> BeginResult:
        with self.state.change() as s:
            out = s.outgoing.get(job.migration_id)
            if out and "begin" in out:
                return BeginResult(**out["begin"])
            holder = s.job_holder(job.domain)
            if holder and holder != job.migration_id:
                raise JobBusy(f"another migration job is already running for domain '{job.domain}'")
            dom = self.lookup(job.domain)
            state = self.state_of(dom)
            if OFFLINE not in job.flags and state == "shutoff":
                raise DriverError(f"domain '{job.domain}' is not running", "DOMAIN_NOT_RUNNING")
            if dom.isActive() and dom.jobInfo()[0] != mapping.JOB_NONE:
                raise JobBusy(f"another migration job is already running for domain '{job.domain}'")
            flags = 0 if OFFLINE in job.flags else libvirt.VIR_DOMAIN_XML_MIGRATABLE
            xml = str(dom.XMLDesc(flags))
            if xmlin is not None:
                domxml.parse_domain(xmlin)  # bounded and safe; libvirt checks the guest ABI
            nbd = self._storage_to_copy(job, xml)
            result: dict[str, Any] = {
                "xml": xmlin if xmlin is not None else xml,
                "cookie": self._cookie(job.domain, dom.UUIDString(), nbd=nbd),
                "state": state,
            }
            s.outgoing[job.migration_id] = {
                "domain": job.domain,
                "uuid": dom.UUIDString(),
                "prior_state": state,
                "xml": xml,
                "xmlin": xmlin,
                "phase": "begin3",
                "begin": result,
            }
            return BeginResult(**result)

    # Perform ---------------------------------------------------------------------------------
    def _describe_disks(
        self, job: MigrationJob, disks: list[Disk], incremental: bool
    ) -> tuple[CookieDisk, ...]:
        return storage.describe(self.lookup(job.domain), disks, incremental)

    def perform(self, job: MigrationJob, cookie: str | None, uri: str) -> None:
        with self.state.change() as s:
            out = s.outgoing.get(job.migration_id)
            if out is None or "begin" not in out:
                raise DriverError(
                    "Perform before Begin (the libvirt driver runs v3)", "NOT_MIGRATING"
                )
            if "started_at" in out:
                return  # started already: libvirtd or our thread carries it
            dest_uri = self._check_cookie(cookie, "perform", job.domain, out["uuid"]).daemon_uri
            if not dest_uri:
                raise DriverError(
                    "the Prepare cookie names no destination daemon", "COOKIE_REJECTED"
                )
            dom = self.lookup(job.domain)
            out.update(
                started_at=time.time(),
                dest_uri=dest_uri,
                memory_kib=dom.info()[1],
                phase="perform",
            )
            params = mapping.migration_params(job, uri, out.get("xmlin"))
            flags = 0
            for name in mapping.flag_names(job.flags):
                flags |= getattr(libvirt, name)
            self._start_run(job, dest_uri, params, flags)

    def _start_run(
        self, job: MigrationJob, dest_uri: str, params: dict[str, Any], flags: int
    ) -> None:
        run = Run()
        run.thread = threading.Thread(
            target=self._migrate,
            args=(run, job, dest_uri, params, flags),
            name=f"libvirt-migrate-{job.migration_id}",
            daemon=True,
        )
        self._runs[job.migration_id] = run
        run.thread.start()

    def _migrate(
        self, run: Run, job: MigrationJob, dest_uri: str, params: dict[str, Any], flags: int
    ) -> None:
        """The thread: libvirt's whole migration, on a connection of its own (the call blocks
        for the migration's length and releases the GIL)."""
        conn = None
        began = time.monotonic()
        try:
            conn = libvirt.open(self.config.uri)
            dom = conn.lookupByName(job.domain)
            dom.migrateToURI3(dest_uri, params, flags)
            run.stats = self._completed_stats(dom, dest_uri, job)
        except libvirt.libvirtError as exc:
            run.error = libvirt_error(exc, "libvirt migration")
        finally:
            run.done = True
            log.info(
                "libvirt migration of %s ended after %.3f s", job.domain, time.monotonic() - began
            )
            if conn is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()
            self._transfer_ended(job.migration_id)

    def _completed_stats(self, dom: Any, dest_uri: str, job: MigrationJob) -> dict[str, int]:
        """The completed job's statistics, from the source or else from the destination."""
        flag = libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED
        try:
            return mapping.completed_stats(dom.jobStats(flag))
        except libvirt.libvirtError:
            pass
        try:
            peer = libvirt.open(dest_uri)
            try:
                return mapping.completed_stats(peer.lookupByName(job.dest_name).jobStats(flag))
            finally:
                peer.close()
        except libvirt.libvirtError:
            return {}

    # Polls -----------------------------------------------------------------------------------
    def perform_status(self, job: MigrationJob) -> TransferStatus:
        """The transfer's state as libvirt tells it. While this host's libvirtd does not
        answer (restarting), the transfer counts as still running: the outcome is read once
        it answers again (libvirtd, restarted, ends or resumes what it was doing)."""
        try:
            return self._status(job)
        except DriverError as exc:
            if exc.code != "HYPERVISOR_UNAVAILABLE":
                raise
            return TransferStatus(False, progress={})

    def _status(self, job: MigrationJob) -> TransferStatus:
        with self.state.change():
            out = self._started_job(job)
            if "result" in out:
                return self._stored_status(out)
            run = self._run_of(job.migration_id)
            dom = self._source_domain(out)
            if dom is not None and (run is None or not run.done):
                stats = self._job_stats(dom)
                if stats is not None and stats.get("type", mapping.JOB_NONE) != mapping.JOB_NONE:
                    self._enforce_timeout(job, out, dom)
                    return TransferStatus(False, progress=mapping.progress(stats))
                if run is not None:  # libvirt's job has not started yet, or just ended
                    return TransferStatus(False, progress={})
            return self._ended(job, out, run, dom)

    def _source_domain(self, out: dict[str, Any]) -> Any:
        return self.find_uuid(self.conn(), out["uuid"])

    @staticmethod
    def _job_stats(dom: Any) -> dict[str, Any] | None:
        try:
            stats: dict[str, Any] = dom.jobStats(0)
        except libvirt.libvirtError:
            return None
        return stats

    def _ended(
        self, job: MigrationJob, out: dict[str, Any], run: Run | None, dom: Any
    ) -> TransferStatus:
        """libvirt has no job on the domain: read the outcome from where the domain is."""
        if OFFLINE in job.flags:  # nothing runs: the call's own result tells
            stayed = run is None or run.error is not None
        else:
            stayed = dom is not None and bool(dom.isActive())
        if stayed:
            error = run.error if run is not None and run.error else None
            out["ended"] = True
            out["result"] = {"error": list(self._failure(out, error))}
            self._resume_if_paused(out, dom)
            return self._stored_status(out)
        stats = run.stats if run is not None else {}
        out["result"] = {"cookie": self._cookie(job.domain, out["uuid"], stats), "stats": stats}
        return self._stored_status(out)

    @staticmethod
    def _failure(out: dict[str, Any], error: DriverError | None) -> tuple[str, str]:
        if out.get("aborted"):
            return "OPERATION_ABORTED", "migration job: canceled by client"
        if out.get("timed_out"):
            return (
                "NOT_CONVERGED",
                "migration did not complete within its completion timeout and was aborted; "
                "the guest keeps running",
            )
        if error is not None:
            return error.code, str(error)
        return "MIGRATION_FAILED", "the libvirt migration ended and the domain stayed on the source"

    def _enforce_timeout(self, job: MigrationJob, out: dict[str, Any], dom: Any) -> None:
        per_gib = self.config.completion_timeout_per_gib
        if out.get("timed_out") or not mapping.timed_out(
            out["started_at"], time.time(), out["memory_kib"], per_gib
        ):
            return
        try:
            if POSTCOPY in job.flags:
                dom.migrateStartPostCopy(0)
                out["postcopy"] = True
            else:
                dom.abortJob()
        except libvirt.libvirtError as exc:
            raise libvirt_error(exc, "enforcing the completion timeout") from None
        out["timed_out"] = True

    def abort_outgoing(self, job: MigrationJob) -> None:
        with self.state.change():
            out = self._transfer_to_abort(job)
            if out is None:
                return
            out["aborted"] = True
            dom = self._source_domain(out)
            if dom is None:
                return
            with contextlib.suppress(libvirt.libvirtError):
                dom.abortJob()  # no job (yet, or any more), or post-copy runs: the poll tells

    # Confirm ---------------------------------------------------------------------------------
    def confirm(self, job: MigrationJob, cookie: str | None, cancelled: bool) -> None:
        with self.state.change() as s:
            out = s.outgoing.get(job.migration_id)
            if out is None or out.get("confirmed"):
                return
            dom = self._source_domain(out) if "uuid" in out else None
            if cancelled:
                self._resume_if_paused(out, dom)
            else:
                self._check_cookie(cookie, "confirm", job.domain, out["uuid"])
                if dom is not None and dom.isActive() and OFFLINE not in job.flags:
                    raise DriverError(
                        f"domain '{job.domain}' is still active on {self.config.host}",
                        "SOURCE_STILL_ACTIVE",
                    )
                self._undefine_if_asked(job, dom)
            out.update(ended=True, confirmed=True)

    def _resume_if_paused(self, out: dict[str, Any], dom: Any) -> None:
        """Resume a source that libvirt left paused; never start an inactive one (the VM may
        run elsewhere)."""
        if dom is None or out.get("prior_state") != "running":
            return
        if self.state_of(dom) == "paused":
            dom.resume()

    def _undefine_if_asked(self, job: MigrationJob, dom: Any) -> None:
        if dom is not None and UNDEFINE_SOURCE in job.flags and dom.isPersistent():
            dom.undefine()

    def destroy_source(self, job: MigrationJob) -> None:
        """Roll forward: the destination runs the VM, so end any source copy by force."""
        with self.state.change() as s:
            out = s.outgoing.setdefault(job.migration_id, {"domain": job.domain})
            dom = (
                self._source_domain(out)
                if "uuid" in out
                else self.find_name(self.conn(), job.domain)
            )
            if dom is not None and dom.isActive():
                dom.destroy()
            self._undefine_if_asked(job, dom)
            out.update(ended=True, confirmed=True)
