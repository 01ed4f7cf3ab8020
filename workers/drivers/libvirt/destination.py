"""The libvirt driver's destination side: Prepare refuses early what libvirt would refuse late
(a domain of that name or UUID here, too little memory, a CPU this host cannot run) and chooses
the migration URI; Finish checks what arrived; a cancelled Finish removes exactly that.

A copy is removed only while the source daemon still runs the domain: libvirt resumes the
destination only after the source stopped, so a copy here is then never the only one.
"""

from __future__ import annotations

from typing import Any

from workers import domxml
from workers.drivers.base import (
    OFFLINE,
    PAUSED,
    PERSIST_DEST,
    DomainConflict,
    DriverError,
    JobBusy,
    MigrationJob,
    NoCapacity,
    PrepareResult,
    VersionUnsupported,
)
from workers.drivers.flags import COPY_STORAGE
from workers.drivers.libvirt import mapping, storage
from workers.drivers.libvirt.base import LibvirtBase, cpu_element, libvirt_error
from workers.drivers.libvirt.binding import libvirt
from workers.drivers.shared import images
from workers.drivers.shared.ports import probe_free_port


class LibvirtDestination(LibvirtBase):
    def prepare(self, job: MigrationJob, cookie: str | None, dom_xml: str | None) -> PrepareResult:
        if dom_xml is None or job.version != 3:
            raise VersionUnsupported("the libvirt driver runs migration protocol v3 only")
        with self.state.change() as s:
            known = s.incoming.get(job.migration_id)
            if known and known["status"] == "prepared":
                return PrepareResult(known["uri"], known["cookie"])
            dom = domxml.parse_domain(domxml.renamed(dom_xml, job.dest_name))
            self._check_host_paths(dom.xml, "Prepare")
            source = self._check_cookie(cookie, "prepare", job.domain, dom.uuid)
            existed = self._check_conflicts_here(dom, job.migration_id)
            if OFFLINE not in job.flags:  # nothing will run here yet
                self._check_memory(dom.memory_kib, dom.name)
                self._check_cpu(dom.xml, dom.type)
            address = self.config.migration_address
            host = f"[{address}]" if ":" in address else address
            created: list[str] = []
            if job.flags & COPY_STORAGE:
                wanted, paths = self._disks_sent(source), images.disk_paths(dom.xml)
                created = images.create_images(storage.PoolImages(self.conn()), wanted, paths)
                # libvirt allocates its NBD server's port from its migration range before it
                # binds the migration port: with a port chosen here the two may collide, so
                # libvirt chooses both (a URI without a port), as nova leaves it to libvirt.
                port, uri = None, f"tcp://{host}"
            else:
                port = probe_free_port(address, self.config.ports, self._prepared_ports())
                uri = f"tcp://{host}:{port}"
            s.incoming[job.migration_id] = {
                "name": dom.name,
                "origname": job.domain,
                "uuid": dom.uuid,
                "memory_kib": dom.memory_kib,
                "xml": dom.xml if OFFLINE in job.flags else None,
                "port": port,
                "uri": uri,
                "status": "prepared",
                "existed": existed,
                "created": created,
                "source_uri": source.daemon_uri,
                "cookie": self._cookie(job.domain, dom.uuid),
            }
            return PrepareResult(uri, s.incoming[job.migration_id]["cookie"])

    def _check_conflicts_here(self, dom: domxml.Domain, migration_id: str) -> bool:
        """libvirt's checks, before anything moves. True when an inactive definition of this
        very domain is already here (libvirt migrates over it; a rollback must keep it)."""
        conn = self.conn()
        same_uuid = self.find_uuid(conn, dom.uuid)
        if same_uuid is not None and same_uuid.name() != dom.name:
            raise DomainConflict(
                f"domain '{same_uuid.name()}' is already defined with uuid {dom.uuid}"
            )
        same_name = self.find_name(conn, dom.name)
        if same_name is not None:
            if same_name.isActive():
                raise DomainConflict(f"domain '{dom.name}' is already active on {self.config.host}")
            if same_name.UUIDString() != dom.uuid:
                raise DomainConflict(
                    f"domain '{dom.name}' already exists with uuid {same_name.UUIDString()}"
                )
        if self.state.incoming_for(dom.name) not in (None, migration_id):
            raise JobBusy(f"domain '{dom.name}' is already processing an incoming migration")
        return same_name is not None

    def _check_memory(self, memory_kib: int, name: str) -> None:
        """The host's free memory, less what prepared migrations will take, must hold the guest."""
        free_kib = int(self.conn().getFreeMemory()) // 1024
        pending = sum(
            j.get("memory_kib", 0)
            for j in self.state.incoming.values()
            if j["status"] == "prepared"
        )
        if mapping.memory_shortfall(memory_kib, free_kib, pending):
            raise NoCapacity(
                f"host {self.config.host} has not enough free memory for '{name}' "
                f"({memory_kib // 1024} MiB needed, {max(0, free_kib - pending) // 1024} MiB free)"
            )

    def _check_cpu(self, xml: str, virt_type: str) -> None:
        """libvirt's comparison of the guest's CPU with what this hypervisor can run."""
        cpu = cpu_element(xml)
        if cpu is None:
            return
        try:
            result = self.conn().compareHypervisorCPU(None, None, None, virt_type, cpu, 0)
        except libvirt.libvirtError as exc:
            raise DriverError(
                f"this host cannot run the guest's CPU: {exc}", "CPU_INCOMPATIBLE"
            ) from None
        if result == libvirt.VIR_CPU_COMPARE_INCOMPATIBLE:
            raise DriverError(
                f"host {self.config.host} cannot run the guest's CPU model", "CPU_INCOMPATIBLE"
            )

    # Finish ----------------------------------------------------------------------------------
    def _finish_incoming(
        self, job: MigrationJob, inc: dict[str, Any], cookie: str | None, cancelled: bool
    ) -> str | None:
        if cancelled:
            self._remove_arrived(inc)
            return None
        if OFFLINE in job.flags:  # no Perform, no cookie: the definition is made here
            self._define_offline(inc)
        else:
            self._check_cookie(cookie, "finish", job.domain, inc["uuid"])
            self._check_arrived(job, inc)
        inc["status"] = "finished"
        inc["result_cookie"] = self._cookie(job.domain, inc["uuid"])
        return str(inc["result_cookie"])

    def _define_offline(self, inc: dict[str, Any]) -> None:
        """An offline migration's Finish: the definition, persistent, as libvirt's does."""
        try:
            self.conn().defineXML(inc["xml"])
        except libvirt.libvirtError as exc:
            raise libvirt_error(exc, f"defining '{inc['name']}'") from None

    def _check_arrived(self, job: MigrationJob, inc: dict[str, Any]) -> None:
        dom = self.find_uuid(self.conn(), inc["uuid"])
        if dom is None or not dom.isActive():
            raise DriverError(
                f"domain '{inc['name']}' did not arrive on {self.config.host}", "NOT_MIGRATING"
            )
        wanted = "paused" if PAUSED in job.flags else "running"
        if self.state_of(dom) != wanted:
            raise DriverError(
                f"domain '{inc['name']}' is {self.state_of(dom)} here, not {wanted}",
                "MIGRATION_FAILED",
            )
        if PERSIST_DEST in job.flags and not dom.isPersistent():
            raise DriverError(
                f"domain '{inc['name']}' arrived but is not persistent", "MIGRATION_FAILED"
            )

    def _remove_arrived(self, inc: dict[str, Any]) -> None:
        """Destroy whatever arrived of this migration (and a definition it brought), but only
        while the source daemon still runs the domain. With this host's libvirtd down and the
        source running the domain, there is nothing to do here: libvirtd, when it restarts,
        kills a domain it was still receiving."""
        try:
            dom = self.find_uuid(self.conn(), inc["uuid"])
        except DriverError:
            if not self._source_runs(inc):
                raise
            inc["status"] = "aborted"
            return
        if dom is not None and dom.isActive():
            if not self._source_runs(inc):
                raise DriverError(
                    f"domain '{inc['name']}' runs here and the source no longer runs it: "
                    "kept, so the VM is not lost",
                    "VM_ON_DESTINATION",
                )
            try:
                dom.destroy()
            except libvirt.libvirtError as exc:
                raise libvirt_error(exc, f"destroying the incoming '{inc['name']}'") from None
        if dom is not None and not inc.get("existed"):
            try:
                if dom.isPersistent():
                    dom.undefine()
            except libvirt.libvirtError:
                pass  # transient: gone with destroy
        images.remove_images(storage.PoolImages(self.conn()), inc.get("created", []))
        inc["status"] = "aborted"

    def _source_runs(self, inc: dict[str, Any]) -> bool:
        if not inc.get("source_uri"):
            return False
        peer = self.peer(inc["source_uri"])
        try:
            dom = self.find_uuid(peer, inc["uuid"])
            return dom is not None and bool(dom.isActive())
        finally:
            peer.close()

    def abort_incoming(self, job: MigrationJob) -> None:
        with self.state.change() as s:
            inc = s.incoming.get(job.migration_id)
            if inc is not None and inc["status"] == "prepared":
                self._remove_arrived(inc)
