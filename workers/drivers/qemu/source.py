"""The QEMU driver's source side: Begin, Perform (``migrate`` plus polled ``query-migrate``),
Confirm, cancel and the completion timeout."""

from __future__ import annotations

import time
from typing import Any

from workers.drivers.base import (
    AUTO_CONVERGE,
    LIVE,
    POSTCOPY,
    BeginResult,
    MigrationJob,
    TransferStatus,
)
from workers.drivers.qemu import cmdline, process, qmp
from workers.drivers.qemu.base import GIB, MIB, QemuBase, _progress


class QemuSource(QemuBase):
    # Source side ---------------------------------------------------------------------------
    def begin(self, job: MigrationJob, xmlin: str | None) -> BeginResult:
        with self.state.change():
            self._domain(job.domain)  # an unknown domain is refused before its state is asked
            state = self._current_state(job.domain)
            check = (lambda _: cmdline.validate(xmlin)) if xmlin is not None else None
            return self._begin_job(job, xmlin, state, check)

    def perform(self, job: MigrationJob, cookie: str | None, uri: str) -> None:
        with self.state.change() as s:
            out = s.outgoing.get(job.migration_id)
            if out and "started_at" in out:
                return
            dom = self._domain(job.domain)
            state = self._current_state(job.domain)
            if out is None:
                out = {"domain": job.domain, "prior_state": state, "xml": dom["xml"]}
                s.outgoing[job.migration_id] = out
            if job.version == 3:
                self._check_cookie(cookie, "perform", job.domain, dom["uuid"])
            sock = self._paths(job.domain).qmp
            caps = [
                {"capability": "auto-converge", "state": AUTO_CONVERGE in job.flags},
                {"capability": "postcopy-ram", "state": POSTCOPY in job.flags},
            ]
            qmp.execute(sock, "migrate-set-capabilities", {"capabilities": caps})
            bandwidth = (job.bandwidth_mibps or 0) * MIB or 10 * GIB
            qmp.execute(
                sock,
                "migrate-set-parameters",
                {"max-bandwidth": bandwidth, "downtime-limit": self.config.downtime_ms},
            )
            if LIVE not in job.flags and state == "running":
                qmp.execute(sock, "stop")
            qmp.execute(sock, "migrate", {"uri": uri})
            out.update(started_at=time.time(), memory_kib=dom["memory_kib"], phase="perform")

    def perform_status(self, job: MigrationJob) -> TransferStatus:
        with self.state.change():
            out = self._started_job(job)
            if "result" in out:
                return self._stored_status(out)
            info = qmp.execute(self._paths(job.domain).qmp, "query-migrate")
            status = info.get("status")
            if status == "completed":
                return self._completed(job, out, info)
            if status in ("failed", "cancelled"):
                return self._failed(job, out, info)
            self._enforce_timeout(job, out, status)
            return TransferStatus(False, progress=_progress(info))

    def _enforce_timeout(self, job: MigrationJob, out: dict[str, Any], status: str | None) -> None:
        limit = self.config.completion_timeout_per_gib * max(1.0, out["memory_kib"] * 1024 / GIB)
        if time.time() - out["started_at"] < limit or out.get("timed_out"):
            return
        sock = self._paths(job.domain).qmp
        if POSTCOPY in job.flags and status == "active":
            qmp.execute(sock, "migrate-start-postcopy")
            out["postcopy"] = True
        elif status != "postcopy-active":
            qmp.execute(sock, "migrate_cancel")
        out["timed_out"] = True

    def _completed(
        self, job: MigrationJob, out: dict[str, Any], info: dict[str, Any]
    ) -> TransferStatus:
        ram = info.get("ram", {})
        stats = {
            "downtime_ms": int(info.get("downtime", 0)),
            "transferred": int(ram.get("transferred", 0)),
            "iterations": int(ram.get("dirty-sync-count", 0)),
        }
        dom = self._domain(job.domain)
        if job.version == 2:  # v2: the source is killed inside Perform
            process.stop(self._paths(job.domain))
            self._end_source_domain(job, out)
        out["result"] = {"cookie": self._cookie(job.domain, dom["uuid"], stats), "stats": stats}
        return self._stored_status(out)

    def _failed(
        self, job: MigrationJob, out: dict[str, Any], info: dict[str, Any]
    ) -> TransferStatus:
        if out.get("aborted"):
            code, message = "OPERATION_ABORTED", "migration job: canceled by client"
        elif out.get("timed_out"):
            code, message = (
                "NOT_CONVERGED",
                (
                    "migration did not complete within its completion "
                    "timeout and was aborted; the guest keeps running"
                ),
            )
        else:
            code, message = (
                "MIGRATION_FAILED",
                f"QEMU: {info.get('error-desc', 'migration failed')}",
            )
        if out["prior_state"] == "running" and self._current_state(job.domain) == "paused":
            qmp.execute(self._paths(job.domain).qmp, "cont")
        out["ended"] = True
        out["result"] = {"error": [code, message]}
        return self._stored_status(out)

    def abort_outgoing(self, job: MigrationJob) -> None:
        with self.state.change():
            out = self._transfer_to_abort(job)
            if out is None:
                return
            out["aborted"] = True
            qmp.execute(self._paths(job.domain).qmp, "migrate_cancel")

    def confirm(self, job: MigrationJob, cookie: str | None, cancelled: bool) -> None:
        with self.state.change() as s:
            out = s.outgoing.get(job.migration_id)
            if out is None or out.get("confirmed"):
                return
            if cancelled:
                if out["prior_state"] == "running" and self._current_state(job.domain) == "paused":
                    qmp.execute(self._paths(job.domain).qmp, "cont")
            else:
                dom = self._domain(job.domain)
                self._check_cookie(cookie, "confirm", job.domain, dom["uuid"])
                process.stop(self._paths(job.domain))
                self._end_source_domain(job, out)
            out.update(ended=True, confirmed=True)

    def destroy_source(self, job: MigrationJob) -> None:
        with self.state.change() as s:
            process.stop(self._paths(job.domain))
            out = s.outgoing.setdefault(job.migration_id, {"domain": job.domain})
            self._end_source_domain(job, out)
            out["confirmed"] = True
