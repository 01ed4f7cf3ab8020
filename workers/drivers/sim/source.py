"""The sim driver's source side: Begin, Perform (a modelled pre-copy), Confirm."""

from __future__ import annotations

import time
from typing import Any

from workers import domxml
from workers.drivers.base import (
    LIVE,
    BeginResult,
    DriverError,
    MigrationJob,
    TransferStatus,
)
from workers.drivers.sim import stream
from workers.drivers.sim.base import SimBase
from workers.drivers.sim.knobs import read_knobs
from workers.drivers.sim.precopy import MIB, Pass, PrecopyPlan, plan_precopy, progress_at


class SimSource(SimBase):
    def begin(self, job: MigrationJob, xmlin: str | None) -> BeginResult:
        with self.state.change():
            return self._begin_job(job, xmlin, check=lambda xml: self._fault(xml, "begin"))

    def _plan(self, job: MigrationJob, xml: str, memory_kib: int) -> PrecopyPlan:
        link = self.config.link_mibps
        bandwidth = min(link, job.bandwidth_mibps) if job.bandwidth_mibps else link
        dirty = read_knobs(xml).dirty_rate_mibps if LIVE in job.flags else 0.0
        return plan_precopy(
            memory_kib * 1024, dirty * MIB, bandwidth * MIB, self.config.max_downtime_s
        )

    def perform(self, job: MigrationJob, cookie: str | None, uri: str) -> None:
        """Send the stream header, then model the copy. The state lock is never held across the
        network: two hosts migrating to each other at once would otherwise wait on each other."""
        with self.state.change() as s:
            out = s.outgoing.get(job.migration_id)
            if out and "started_at" in out:
                return
            out = self._take_job(job, "perform3" if job.version == 3 else "perform2")
            dom = self._domain(job.domain)
            try:
                if job.version in (1, 3):
                    self._check_cookie(
                        cookie, "perform", job.domain, dom["uuid"], uuid_optional=job.version == 1
                    )
            except DriverError:
                out["ended"] = True
                raise
            header = {
                "name": job.dest_name,
                "origname": job.domain,
                "uuid": dom["uuid"],
                "xml": domxml.renamed(out["xml"], job.dest_name),
                "state": dom["state"],
                "memory_kib": dom["memory_kib"],
                "migration": job.migration_id,
            }
        try:
            stream.send_header(uri, header)
        except DriverError:
            with self.state.change() as s:
                s.outgoing[job.migration_id]["ended"] = True
            raise
        with self.state.change() as s:
            self._start_transfer(job, s.outgoing[job.migration_id], self._domain(job.domain))

    def _start_transfer(self, job: MigrationJob, out: dict[str, Any], dom: dict[str, Any]) -> None:
        plan = self._plan(job, out["xml"], dom["memory_kib"])
        failing = self._faulty(out["xml"], "perform")
        out.update(
            started_at=time.time(),
            duration=plan.duration,
            passes=[[p.start, p.duration, p.bytes] for p in plan.passes],
            downtime=plan.downtime,
            transferred=plan.transferred,
            converges=plan.converges,
            fail_at=plan.duration / 2 if failing else None,
            fail_why=failing.why if failing else None,
            fail_bug=bool(failing and failing.bug),
        )
        if LIVE not in job.flags:
            dom["state"] = "paused"

    def perform_status(self, job: MigrationJob) -> TransferStatus:
        with self.state.change():
            out = self._started_job(job)
            if "result" in out:
                return self._stored_status(out)
            dom = self._domain(job.domain)
            elapsed = (time.time() - out["started_at"]) / self.config.time_scale
            stats = self._progress(out, elapsed, dom)
            if out["fail_at"] is not None and elapsed >= out["fail_at"]:
                if out.get("fail_bug"):
                    raise RuntimeError(out["fail_why"])  # the transfer left as it is
                return self._fail_transfer(
                    out,
                    dom,
                    "INJECTED_FAULT",
                    out.get("fail_why") or "fault injected in perform by the domain's sim metadata",
                )
            if not out["converges"] and elapsed >= out["duration"]:
                return self._fail_transfer(
                    out,
                    dom,
                    "NOT_CONVERGED",
                    "migration did not converge: the guest dirties memory "
                    "faster than the link can carry it",
                )
            if elapsed < out["duration"]:
                return TransferStatus(False, progress=stats)
            return self._complete_transfer(job, out, dom)

    def abort_outgoing(self, job: MigrationJob) -> None:
        with self.state.change():
            out = self._transfer_to_abort(job)
            if out is None:
                return
            dom = self._domain(job.domain)
            self._fail_transfer(out, dom, "OPERATION_ABORTED", "migration job: canceled by client")

    def _progress(
        self, out: dict[str, Any], elapsed: float, dom: dict[str, Any]
    ) -> dict[str, float]:
        plan = PrecopyPlan(
            out["converges"],
            tuple(Pass(*p) for p in out["passes"]),
            out["downtime"],
            out["transferred"],
        )
        dirty = read_knobs(out["xml"]).dirty_rate_mibps * MIB
        return progress_at(plan, elapsed, dom["memory_kib"] * 1024, dirty)

    def _fail_transfer(
        self, out: dict[str, Any], dom: dict[str, Any], code: str, message: str
    ) -> TransferStatus:
        dom["state"] = out["prior_state"]
        out["ended"] = True
        out["result"] = {"error": [code, message]}
        return self._stored_status(out)

    def _complete_transfer(
        self, job: MigrationJob, out: dict[str, Any], dom: dict[str, Any]
    ) -> TransferStatus:
        stats = {
            "downtime_ms": int(out["downtime"] * 1000),
            "transferred": int(out["transferred"]),
            "iterations": len(out["passes"]),
        }
        if job.version == 3:
            dom["state"] = "paused"
        else:
            self._end_source_domain(job, out)
        out["result"] = {"cookie": self._cookie(job.domain, dom["uuid"], stats), "stats": stats}
        return self._stored_status(out)

    def confirm(self, job: MigrationJob, cookie: str | None, cancelled: bool) -> None:
        with self.state.change() as s:
            out = s.outgoing.get(job.migration_id)
            if out is None or out.get("confirmed"):
                return
            dom = s.domains.get(job.domain)
            if cancelled:
                if dom is not None and dom["state"] == "paused" and out["prior_state"] == "running":
                    dom["state"] = "running"
                out.update(ended=True, confirmed=True)
                return
            if dom is not None:
                self._check_cookie(cookie, "confirm", job.domain, dom["uuid"])
                self._fault(out["xml"], "confirm")
            self._end_source_domain(job, out)
            out["confirmed"] = True

    def destroy_source(self, job: MigrationJob) -> None:
        with self.state.change() as s:
            out = s.outgoing.setdefault(job.migration_id, {"domain": job.domain})
            self._end_source_domain(job, out)
            out["confirmed"] = True
