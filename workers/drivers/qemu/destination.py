"""The QEMU driver's destination side: Prepare (a paused QEMU waiting with ``-incoming defer``),
Finish (resume, or kill when cancelled) and cleanup."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from workers import domxml
from workers.cookie import Cookie, CookieDisk, Nbd
from workers.disks import disks_in_xml
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
from workers.drivers.flags import COPY_STORAGE
from workers.drivers.qemu import cmdline, process, qmp, storage
from workers.drivers.qemu.base import QemuBase
from workers.drivers.shared import images
from workers.drivers.shared.ports import no_free_port, probe_free_port
from workers.host_paths import PathOutsideRoots, inside

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
            self._check_host_paths(dom.xml, "Prepare")
            sent = None
            if job.version == 3:
                sent = self._check_cookie(cookie, "prepare", job.domain, dom.uuid)
            wanted = self._disks_to_receive(job, sent, dom.xml)
            self._check_conflicts(dom.name, dom.uuid, job.migration_id)
            self._check_room(dom.memory_kib)
            created = self._create_images(wanted, dom.xml)
            try:
                paths = self._launch(dom.name, dom.xml, incoming=True)
            except DriverError:
                images.remove_images(storage.LOCAL, created)
                raise
            try:
                if POSTCOPY in job.flags:
                    caps = [{"capability": "postcopy-ram", "state": True}]
                    qmp.execute(paths.qmp, "migrate-set-capabilities", {"capabilities": caps})
                port, uri = self._listen_incoming(paths)
                nbd_port = self._export_disks(paths, wanted, port)
            except DriverError:
                process.stop(paths)
                images.remove_images(storage.LOCAL, created)
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
                "copy_disks": [d.target for d in wanted],
                "created": created,
                "nbd_port": nbd_port,
                "cookie": self._cookie(
                    job.domain,
                    dom.uuid,
                    nbd=Nbd(wanted, self.config.migration_address, nbd_port) if wanted else None,
                ),
            }
            s.incoming[job.migration_id] = incoming
            return PrepareResult(uri, incoming["cookie"])

    def _disks_to_receive(
        self, job: MigrationJob, sent: Cookie | None, xml: str
    ) -> tuple[CookieDisk, ...]:
        """The disks Begin said it copies (storage migration), or, for shared storage, none:
        then every image must already be here."""
        if not job.flags & COPY_STORAGE:
            self._check_shared_disks(xml, ())
            return ()
        wanted = self._disks_sent(sent)
        self._check_shared_disks(xml, [d.target for d in wanted])
        for disk in wanted:
            if disk.format not in ("raw", "qcow2"):
                raise DriverError(f"disk {disk.target}: unsupported format {disk.format!r}")
        return wanted

    @staticmethod
    def _check_shared_disks(xml: str, copied: Sequence[str]) -> None:
        """Every disk that is not copied must already be here (shared storage)."""
        for disk in disks_in_xml(xml):
            if disk.path and disk.target not in copied and not os.path.exists(disk.path):
                raise DriverError(
                    f"disk {disk.target}: the destination cannot open {disk.path} (no such file "
                    "here). Without --copy-storage-* both hosts must see the same image (shared "
                    "storage); to copy local disks, use --copy-storage-all",
                    "DISK_NOT_SHARED",
                )

    def _create_images(self, wanted: tuple[CookieDisk, ...], xml: str) -> list[str]:
        paths = images.disk_paths(xml)
        for disk in wanted:
            if disk.backing and disk.target in paths:
                backing = images.backing_path(paths[disk.target], disk.backing)
                if not inside(backing, self.config.storage_roots):
                    raise PathOutsideRoots(
                        f"Prepare: disk {disk.target}'s backing file {backing!r} is outside "
                        f"the host's storage roots ({', '.join(self.config.storage_roots)})"
                    )
        return images.create_images(storage.LOCAL, wanted, paths)

    def _export_disks(
        self, paths: cmdline.Paths, wanted: tuple[CookieDisk, ...], migration_port: int
    ) -> int | None:
        """The NBD server the source mirrors the disks into, on a port of the range."""
        if not wanted:
            return None
        address = self.config.migration_address
        port = probe_free_port(
            address, self.config.ports, self._prepared_ports() | {migration_port}
        )
        storage.start_exports(paths.qmp, address, port, [d.target for d in wanted])
        return port

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
            self._remove_incoming(inc)
            return None
        try:
            if job.version == 3:
                self._check_cookie(cookie, "finish", job.domain, inc["uuid"])
            self._wait_received(inc["name"])
            if inc.get("copy_disks"):
                storage.stop_exports(paths.qmp)
            if PAUSED not in job.flags:
                qmp.execute(paths.qmp, "cont")
        except DriverError:
            if job.version == 3:  # the source can still be resumed: kill this copy
                self._remove_incoming(inc)
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
                self._remove_incoming(inc)

    def _remove_incoming(self, inc: dict[str, Any]) -> None:
        """Kill the incoming QEMU and delete the images its Prepare created (never others)."""
        process.stop(self._paths(inc["name"]))
        images.remove_images(storage.LOCAL, inc.get("created", []))
        inc["status"] = "aborted"
