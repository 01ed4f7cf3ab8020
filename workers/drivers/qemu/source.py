"""The QEMU driver's source side: Begin, Perform (``migrate`` plus polled ``query-migrate``),
Confirm, cancel and the completion timeout."""

from __future__ import annotations

import time
from typing import Any

from workers.cookie import Cookie, CookieDisk
from workers.disks import Disk
from workers.drivers.base import (
    AUTO_CONVERGE,
    COPY_STORAGE_INC,
    LIVE,
    POSTCOPY,
    BeginResult,
    DriverError,
    MigrationJob,
    TransferStatus,
)
from workers.drivers.qemu import cmdline, process, qmp, storage
from workers.drivers.qemu.base import GIB, MIB, QemuBase, _progress


class QemuSource(QemuBase):
    # Source side ---------------------------------------------------------------------------
    def begin(self, job: MigrationJob, xmlin: str | None) -> BeginResult:
        with self.state.change():
            self._domain(job.domain)  # an unknown domain is refused before its state is asked
            state = self._current_state(job.domain)
            check = (lambda _: cmdline.validate(xmlin)) if xmlin is not None else None
            return self._begin_job(job, xmlin, state, check)

    def _describe_disks(
        self, job: MigrationJob, disks: list[Disk], incremental: bool
    ) -> tuple[CookieDisk, ...]:
        return storage.describe(self._paths(job.domain).qmp, disks, incremental)

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
            sent = None
            if job.version == 3:
                sent = self._check_cookie(cookie, "perform", job.domain, dom["uuid"])
            sock = self._paths(job.domain).qmp
            disks = out.get("copy_disks", [])
            caps = [
                {"capability": "auto-converge", "state": AUTO_CONVERGE in job.flags},
                {"capability": "postcopy-ram", "state": POSTCOPY in job.flags},
                {"capability": "pause-before-switchover", "state": bool(disks)},
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
            if disks:  # memory follows once every mirror is in sync (perform_status)
                self._start_mirrors(job, out, sent, disks, uri)
            else:
                qmp.execute(sock, "migrate", {"uri": uri})
            out.update(started_at=time.time(), memory_kib=dom["memory_kib"], phase="perform")

    def _start_mirrors(
        self,
        job: MigrationJob,
        out: dict[str, Any],
        sent: Cookie | None,
        disks: list[str],
        uri: str,
    ) -> None:
        if sent is None or sent.nbd is None or sent.nbd.host is None or sent.nbd.port is None:
            raise DriverError("storage migration: Prepare's cookie names no NBD server")
        sock = self._paths(job.domain).qmp
        out.update(stage="mirror", uri=uri)
        try:
            storage.start_mirrors(
                sock,
                sent.nbd.host,
                sent.nbd.port,
                disks,
                incremental=COPY_STORAGE_INC in job.flags,
                speed=(job.bandwidth_mibps or 0) * MIB,
            )
        except DriverError:
            storage.cancel_mirrors(sock, disks)
            out.pop("stage")
            raise

    def perform_status(self, job: MigrationJob) -> TransferStatus:
        with self.state.change():
            out = self._started_job(job)
            if "result" in out:
                return self._stored_status(out)
            if out.get("stage") == "mirror":
                return self._mirror_status(job, out)
            sock = self._paths(job.domain).qmp
            info = qmp.execute(sock, "query-migrate")
            status = info.get("status")
            if status == "pre-switchover":
                self._switch_over(job, out)
            if status == "completed":
                storage.remove_mirrors(sock, out.get("copy_disks", []))
                return self._completed(job, out, info)
            if status in ("failed", "cancelled"):
                return self._failed(job, out, info)
            self._enforce_timeout(job, out, status)
            return TransferStatus(False, progress={**_progress(info), **out.get("disk", {})})

    def _mirror_status(self, job: MigrationJob, out: dict[str, Any]) -> TransferStatus:
        """The disks are being copied: once every mirror is in sync, memory follows."""
        sock = self._paths(job.domain).qmp
        disks = out["copy_disks"]
        ready, total, done, error = storage.mirror_state(sock, disks)
        out["disk"] = {
            "disk_total": float(total),
            "disk_processed": float(done),
            "disk_remaining": float(max(0, total - done)),
        }
        if error or out.get("aborted"):
            return self._failed(job, out, {"error-desc": error or "cancelled"})
        if ready:
            qmp.execute(sock, "migrate", {"uri": out["uri"]})
            out["stage"] = "memory"
        elif self._timed_out(out):
            out["timed_out"] = True
            return self._failed(job, out, {})
        percent = 100.0 * done / total if total else 0.0
        return TransferStatus(False, progress={**out["disk"], "percent": min(99.0, percent)})

    def _switch_over(self, job: MigrationJob, out: dict[str, Any]) -> None:
        """QEMU paused the guest before the switch-over: complete the mirrors there (the copy
        is consistent), then let the migration finish."""
        sock = self._paths(job.domain).qmp
        if storage.complete_mirrors(sock, out.get("copy_disks", [])):
            qmp.execute(sock, "migrate-continue", {"state": "pre-switchover"})

    def _timed_out(self, out: dict[str, Any]) -> bool:
        """Past the completion timeout: per GiB of memory and of disk to copy."""
        size = out["memory_kib"] * 1024 + out.get("disk", {}).get("disk_total", 0)
        limit = self.config.completion_timeout_per_gib * max(1.0, size / GIB)
        return time.time() - out["started_at"] >= limit and not out.get("timed_out")

    def _enforce_timeout(self, job: MigrationJob, out: dict[str, Any], status: str | None) -> None:
        if not self._timed_out(out):
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
        for key in ("disk_total", "disk_processed"):  # a storage migration's disk bytes
            if key in out.get("disk", {}):
                stats[key] = int(out["disk"][key])
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
        storage.cancel_mirrors(self._paths(job.domain).qmp, out.get("copy_disks", []))
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
            if out.get("stage") != "mirror":  # a copy of the disks alone ends at the next poll
                qmp.execute(self._paths(job.domain).qmp, "migrate_cancel")

    def confirm(self, job: MigrationJob, cookie: str | None, cancelled: bool) -> None:
        with self.state.change() as s:
            out = s.outgoing.get(job.migration_id)
            if out is None or out.get("confirmed"):
                return
            if cancelled:
                sock = self._paths(job.domain).qmp
                storage.cancel_mirrors(sock, out.get("copy_disks", []))
                if out["prior_state"] == "running" and self._current_state(job.domain) == "paused":
                    qmp.execute(sock, "cont")
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
