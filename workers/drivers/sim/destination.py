"""The sim driver's destination side: Prepare (reserve, open a port), Finish, and cleanup."""

from __future__ import annotations

from typing import Any

from workers import domxml, safexml
from workers.drivers.base import (
    OFFLINE,
    PAUSED,
    PERSIST_DEST,
    DomainState,
    DriverError,
    MigrationJob,
    PrepareResult,
)
from workers.drivers.sim import stream
from workers.drivers.sim.base import SimBase


class SimDestination(SimBase):
    def prepare(self, job: MigrationJob, cookie: str | None, dom_xml: str | None) -> PrepareResult:
        with self.state.change() as s:
            known = s.incoming.get(job.migration_id)
            if known and known["status"] == "prepared" and job.migration_id not in self._listeners:
                self._listen(job.migration_id, known)  # this worker restarted: listen again
            if known and known["status"] in ("prepared", "received"):
                return PrepareResult(known["uri"], known["cookie"])
            incoming: dict[str, Any] = {
                "name": job.dest_name,
                "origname": job.domain,
                "uuid": None,
                "xml": None,
                "memory_kib": 0,
            }
            self._fault(dom_xml, "prepare")  # v1 sends no XML: only the host's faults apply
            if dom_xml is not None:
                dom = domxml.parse_domain(dom_xml)
                if job.version == 3:
                    self._check_cookie(cookie, "prepare", job.domain, dom.uuid)
                incoming.update(
                    uuid=dom.uuid,
                    xml=domxml.renamed(dom.xml, job.dest_name),
                    memory_kib=dom.memory_kib,
                )
                self._check_room(dom.memory_kib)
            self._check_conflicts(job.dest_name, incoming["uuid"], job.migration_id)
            incoming["cookie"] = (
                None if job.version == 2 else self._cookie(job.domain, incoming["uuid"])
            )
            if OFFLINE in job.flags:
                incoming.update(uri="offline:", status="received")
            else:
                self._listen(job.migration_id, incoming)
            s.incoming[job.migration_id] = incoming
            return PrepareResult(incoming["uri"], incoming["cookie"])

    def _listen(self, migration_id: str, incoming: dict[str, Any]) -> None:
        listener = stream.listen(
            self.config.migration_address,
            self.config.ports,
            self._prepared_ports(),
            lambda header: self._receive(migration_id, header),
        )
        self._listeners[migration_id] = listener
        address = self.config.migration_address
        incoming.update(uri=f"tcp:{address}:{listener.port}", port=listener.port, status="prepared")

    def _receive(self, migration_id: str, header: dict[str, Any]) -> str | None:
        """Called by the listener thread when the source's stream header arrives."""
        with self.state.change() as s:
            inc = s.incoming.get(migration_id)
            if inc is None or inc["status"] != "prepared":
                return "no incoming migration is prepared on this port"
            if header.get("name") != inc["name"]:
                return f"stream is for domain {header.get('name')!r}, expected {inc['name']!r}"
            try:
                dom = domxml.parse_domain(str(header.get("xml", "")))
            except (domxml.InvalidDomain, safexml.XMLRejected) as exc:
                return str(exc)
            if inc["uuid"] is None:  # v1: the definition arrives with the stream
                try:
                    self._check_conflicts(inc["name"], dom.uuid, migration_id)
                    self._check_room(dom.memory_kib)
                except DriverError as exc:
                    return str(exc)
                inc.update(uuid=dom.uuid, xml=dom.xml, memory_kib=dom.memory_kib)
            elif dom.uuid != inc["uuid"]:
                return f"stream carries uuid {dom.uuid}, expected {inc['uuid']}"
            inc["status"] = "received"
            inc["source_state"] = header.get("state")
            return None

    def _finish_incoming(
        self, job: MigrationJob, inc: dict[str, Any], cookie: str | None, cancelled: bool
    ) -> str | None:
        if cancelled:
            self._drop_incoming(job.migration_id, inc)
            return None
        if job.version == 3 and OFFLINE not in job.flags:  # offline: no cookie
            self._check_cookie(cookie, "finish", job.domain, inc["uuid"] or "")
        if inc["status"] != "received":
            self._drop_incoming(job.migration_id, inc)
            raise DriverError(
                "no migration stream arrived before Finish", "MIGRATION_STREAM_FAILED"
            )
        return self._start_received(job, inc)

    def _start_received(self, job: MigrationJob, inc: dict[str, Any]) -> str:
        faulty = self._faulty(inc["xml"], "finish")
        if faulty and job.version == 3:
            self._drop_incoming(job.migration_id, inc)
            faulty.throw()
        dom = domxml.parse_domain(inc["xml"])
        existing = self.state.domains.get(dom.name)
        state: DomainState
        if OFFLINE in job.flags:
            state = existing["state"] if existing else "shutoff"
        else:
            state = "paused" if faulty or PAUSED in job.flags else "running"
        persistent = PERSIST_DEST in job.flags or OFFLINE in job.flags or bool(existing)
        self.state.domains[dom.name] = self._record(dom, state, persistent)
        self._close_listener(job.migration_id)
        inc["status"] = "finished"
        inc["result_cookie"] = self._cookie(job.domain, dom.uuid)
        if faulty:  # v1/v2: left paused "in case admin can fix things up", as libvirt does
            faulty.throw("; the guest is left paused on the destination")
        return str(inc["result_cookie"])

    def _drop_incoming(self, migration_id: str, inc: dict[str, Any]) -> None:
        self._close_listener(migration_id)
        inc["status"] = "aborted"

    def _close_listener(self, migration_id: str) -> None:
        listener = self._listeners.pop(migration_id, None)
        if listener is not None:
            listener.close()

    def abort_incoming(self, job: MigrationJob) -> None:
        with self.state.change() as s:
            inc = s.incoming.get(job.migration_id)
            if inc is not None and inc["status"] in ("prepared", "received"):
                self._drop_incoming(job.migration_id, inc)
