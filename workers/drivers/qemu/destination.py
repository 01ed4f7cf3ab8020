"""The QEMU driver's destination side: Prepare (a paused QEMU waiting with ``-incoming defer``),
Finish (resume, or kill when cancelled) and cleanup."""

from __future__ import annotations

import time
from typing import Any

from workers import domxml
from workers.drivers.base import (
    PAUSED,
    PERSIST_DEST,
    POSTCOPY,
    DomainState,
    DriverError,
    MigrationJob,
    PrepareResult,
    VersionUnsupported,
)
from workers.drivers.qemu import cmdline, process, qmp
from workers.drivers.qemu.base import QemuBase
from workers.drivers.shared.ports import no_free_port, probe_free_port

INCOMING_WAIT = 120.0
PORT_ATTEMPTS = 5  # ports taken by another process between our probe and QEMU's bind


class QemuDestination(QemuBase):
    def prepare(self, job: MigrationJob, cookie: str | None, dom_xml: str | None) -> PrepareResult:
        if dom_xml is None:
            raise VersionUnsupported("the QEMU driver needs the domain XML in Prepare (v2 or v3)")
        with self.state.change() as s:
            known = s.incoming.get(job.migration_id)
            if (
                known
                and known["status"] == "prepared"
                and process.alive(self._paths(known["name"]))
            ):
                return PrepareResult(known["uri"], known["cookie"])
            dom = domxml.parse_domain(domxml.renamed(dom_xml, job.dest_name))
            cmdline.validate(dom.xml)
            if job.version == 3:
                self._check_cookie(cookie, "prepare", job.domain, dom.uuid)
            self._check_conflicts(dom.name, dom.uuid, job.migration_id)
            self._check_room(dom.memory_kib)
            paths = self._launch(dom.name, dom.xml, incoming=True)
            try:
                if POSTCOPY in job.flags:
                    caps = [{"capability": "postcopy-ram", "state": True}]
                    qmp.execute(paths.qmp, "migrate-set-capabilities", {"capabilities": caps})
                port, uri = self._listen_incoming(paths)
            except DriverError:
                process.stop(paths)
                raise
            incoming: dict[str, Any] = {
                "name": dom.name,
                "origname": job.domain,
                "uuid": dom.uuid,
                "xml": dom.xml,
                "memory_kib": dom.memory_kib,
                "vcpus": dom.vcpus,
                "port": port,
                "uri": uri,
                "status": "prepared",
                "cookie": self._cookie(job.domain, dom.uuid),
            }
            s.incoming[job.migration_id] = incoming
            return PrepareResult(uri, incoming["cookie"])

    def _listen_incoming(self, paths: cmdline.Paths) -> tuple[int, str]:
        """Have QEMU listen on a free port of the range. Another process may bind the port between
        the probe and QEMU's bind: then the next one (QEMU accepts migrate-incoming again after
        a failed one)."""
        address, ports = self.config.migration_address, self.config.ports
        taken = self._prepared_ports()
        for _ in range(PORT_ATTEMPTS):
            port = probe_free_port(address, ports, taken)
            uri = f"tcp:{address}:{port}"
            try:
                qmp.execute(paths.qmp, "migrate-incoming", {"uri": uri})
            except qmp.QMPError as exc:
                if "Address already in use" not in str(exc):
                    raise
                taken.add(port)
                continue
            return port, uri
        raise no_free_port(ports, address)

    def _wait_received(self, name: str) -> None:
        sock = self._paths(name).qmp
        deadline = time.monotonic() + INCOMING_WAIT
        while time.monotonic() < deadline:
            status = qmp.execute(sock, "query-migrate").get("status")
            if status == "completed":
                return
            if status in ("failed", "cancelled"):
                raise DriverError(f"the incoming migration {status}", "MIGRATION_FAILED")
            time.sleep(0.1)
        raise DriverError("the incoming migration did not complete in time", "MIGRATION_FAILED")

    def _finish_incoming(
        self, job: MigrationJob, inc: dict[str, Any], cookie: str | None, cancelled: bool
    ) -> str | None:
        paths = self._paths(inc["name"])
        if cancelled:
            process.stop(paths)
            inc["status"] = "aborted"
            return None
        try:
            if job.version == 3:
                self._check_cookie(cookie, "finish", job.domain, inc["uuid"])
            self._wait_received(inc["name"])
            if PAUSED not in job.flags:
                qmp.execute(paths.qmp, "cont")
        except DriverError:
            if job.version == 3:  # the source can still be resumed: kill this copy
                process.stop(paths)
                inc["status"] = "aborted"
            raise
        persistent = PERSIST_DEST in job.flags or inc["name"] in self.state.domains
        state: DomainState = "paused" if PAUSED in job.flags else "running"
        self.state.domains[inc["name"]] = self._record(
            domxml.parse_domain(inc["xml"]), state, persistent
        )
        inc["status"] = "finished"
        inc["result_cookie"] = self._cookie(job.domain, inc["uuid"])
        return str(inc["result_cookie"])

    def abort_incoming(self, job: MigrationJob) -> None:
        with self.state.change() as s:
            inc = s.incoming.get(job.migration_id)
            if inc is not None and inc["status"] == "prepared":
                process.stop(self._paths(inc["name"]))
                inc["status"] = "aborted"
