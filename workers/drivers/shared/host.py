"""``HostDriver``: what every driver does the same way on its host, whatever runs the guests.

Domains and migration jobs live in ``HostState`` (persisted); a driver adds how a guest really
starts, stops, and moves. The checks here are libvirt's: a domain of that name or uuid already
here, not enough memory, one migration job per domain, a cookie that belongs to this migration.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

from workers import domxml, safexml
from workers.cookie import Cookie, CookieDisk, CookieRejected, Nbd, validate_cookie
from workers.disks import Disk, DiskSelectionError, disks_in_xml, disks_to_copy
from workers.drivers.base import (
    COPY_STORAGE_INC,
    OFFLINE,
    UNDEFINE_SOURCE,
    BeginResult,
    Capabilities,
    DomainConflict,
    DomainInfo,
    DomainNotFound,
    DomainState,
    Driver,
    DriverError,
    JobBusy,
    MigrationJob,
    NoCapacity,
    TransferStatus,
)
from workers.drivers.flags import COPY_STORAGE
from workers.drivers.shared.config import HostConfig
from workers.drivers.shared.state import HostState
from workers.host_paths import check_host_paths
from workers.safexml import XMLRejected


class HostDriver(Driver):
    #: The driver's name, as ``vmigrate hosts`` shows it.
    NAME: ClassVar[str]
    #: The protocol versions this driver can run at all (a host may offer fewer).
    SUPPORTED: ClassVar[frozenset[int]] = frozenset({1, 2, 3})
    #: The driver copies local disks with the memory (``--copy-storage-all``/``-inc``).
    COPIES_STORAGE: ClassVar[bool] = False

    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.state = HostState(config.state_dir, config.host_uuid)

    # Facts -----------------------------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        protocols = self.config.protocols & self.SUPPORTED
        return Capabilities(
            self.NAME,
            protocols,
            self.config.memory_mib,
            self.config.vcpus,
            copy_storage=self.COPIES_STORAGE,
        )

    @property
    def host_uuid(self) -> str:
        return self.state.host_uuid

    def endpoint(self) -> dict[str, object]:
        ports = self.config.ports
        found: dict[str, object] = {
            "migration_address": self.config.migration_address,
            "migration_ports": [ports.start, ports.stop - 1],
        }
        if self._daemon_uri():
            found["daemon_uri"] = self._daemon_uri()
        return found

    def _current_state(self, name: str) -> DomainState:
        """What the guest is doing now; a driver whose guests live outside its state asks them."""
        state: DomainState = self.state.domains[name]["state"]
        return state

    def _info(self, name: str) -> DomainInfo:
        d = self.state.domains[name]
        d["state"] = self._current_state(name)
        return DomainInfo(
            name,
            d["uuid"],
            d["state"],
            d["memory_kib"],
            d["vcpus"],
            d["persistent"],
            tuple(d.get("disks", ())),
        )

    def _domain(self, name: str) -> dict[str, Any]:
        if name not in self.state.domains:
            raise DomainNotFound(f"no domain with matching name '{name}' on {self.config.host}")
        return self.state.domains[name]

    @staticmethod
    def _record(dom: domxml.Domain, state: DomainState, persistent: bool) -> dict[str, Any]:
        """What the host keeps of a domain."""
        return {
            "uuid": dom.uuid,
            "xml": dom.xml,
            "state": state,
            "memory_kib": dom.memory_kib,
            "vcpus": dom.vcpus,
            "persistent": persistent,
            "disks": [disk.as_dict() for disk in disks_in_xml(dom.xml)],
        }

    # Cookies ---------------------------------------------------------------------------------
    def _cookie(
        self,
        name: str,
        uuid: str | None,
        stats: dict[str, int] | None = None,
        nbd: Nbd | None = None,
    ) -> str:
        return Cookie(
            name,
            uuid,
            self.config.host,
            self.host_uuid,
            statistics=stats or {},
            daemon_uri=self._daemon_uri(),
            nbd=nbd,
        ).to_xml()

    # Storage migration -----------------------------------------------------------------------
    def _storage_to_copy(self, job: MigrationJob, xml: str) -> Nbd | None:
        """Begin of a storage migration: the disks it copies, described as the destination
        must create them (None without ``copy_storage_*``)."""
        if not job.flags & COPY_STORAGE:
            return None
        try:
            disks = disks_to_copy(disks_in_xml(xml), job.migrate_disks)
        except DiskSelectionError as exc:
            raise DriverError(str(exc), exc.code) from None
        return Nbd(self._describe_disks(job, disks, COPY_STORAGE_INC in job.flags))

    @staticmethod
    def _disks_sent(sent: Cookie | None) -> tuple[CookieDisk, ...]:
        """Prepare of a storage migration: the disks Begin's cookie says it copies."""
        if sent is None or sent.nbd is None:
            raise DriverError("storage migration: Begin's cookie lists no disks", "COOKIE_REJECTED")
        return sent.nbd.disks

    def _describe_disks(
        self, job: MigrationJob, disks: list[Disk], incremental: bool
    ) -> tuple[CookieDisk, ...]:
        """Each disk's virtual size, format and (``incremental``) backing file."""
        raise DriverError(
            f"the {self.NAME} driver cannot copy storage", "STORAGE_MIGRATION_UNSUPPORTED"
        )

    def _daemon_uri(self) -> str | None:
        """How a peer reaches this host's hypervisor daemon, if it has one (libvirt)."""
        return None

    def _check_cookie(
        self, text: str | None, phase: str, name: str, uuid: str, uuid_optional: bool = False
    ) -> Cookie:
        if text is None:
            raise DriverError(f"{phase} needs a migration cookie and got none", "COOKIE_REJECTED")
        try:
            return validate_cookie(
                text,
                phase=phase,
                expect_name=name,
                expect_uuid=uuid,
                local_host_uuid=self.host_uuid,
                uuid_optional=uuid_optional,
            )
        except (CookieRejected, XMLRejected) as exc:
            raise DriverError(str(exc), exc.code) from None

    # Migration jobs --------------------------------------------------------------------------
    def _take_job(
        self, job: MigrationJob, phase: str, state: DomainState | None = None
    ) -> dict[str, Any]:
        """The outgoing job of ``job`` (created on first use): one migration job per domain, and
        a domain that runs (or is paused), unless the migration is offline."""
        holder = self.state.job_holder(job.domain)
        if holder and holder != job.migration_id:
            raise JobBusy(f"another migration job is already running for domain '{job.domain}'")
        dom = self._domain(job.domain)
        state = state or dom["state"]
        if OFFLINE not in job.flags and state == "shutoff":
            raise DriverError(f"domain '{job.domain}' is not running", "DOMAIN_NOT_RUNNING")
        out = self.state.outgoing.setdefault(
            job.migration_id, {"domain": job.domain, "prior_state": state, "xml": dom["xml"]}
        )
        out["phase"] = phase
        return out

    def _begin_job(
        self,
        job: MigrationJob,
        xmlin: str | None,
        state: DomainState | None = None,
        check: Callable[[str], object] | None = None,
    ) -> BeginResult:
        """Begin's bookkeeping, the same for every driver (the caller holds ``state.change()``):
        replay a Begin that already ran, take the job, run the driver's ``check`` on the domain's
        XML, choose the XML that travels (a destination ``xmlin`` must keep the guest ABI). A
        Begin that fails leaves no job behind, so the domain is not left busy."""
        out = self.state.outgoing.get(job.migration_id)
        if out and "begin" in out:
            return BeginResult(**out["begin"])
        out = self._take_job(job, "begin3", state)
        dom = self._domain(job.domain)
        try:
            if check is not None:
                check(dom["xml"])
            xml = dom["xml"] if xmlin is None else self._abi_stable(dom["xml"], xmlin)
            nbd = self._storage_to_copy(job, dom["xml"])
        except (DriverError, ValueError):
            out["ended"] = True
            raise
        if nbd is not None:
            out["copy_disks"] = [d.target for d in nbd.disks]
        result: dict[str, Any] = {
            "xml": xml,
            "cookie": self._cookie(job.domain, dom["uuid"], nbd=nbd),
            "state": state or dom["state"],
        }
        out.update(begin=result, xml=xml)
        return BeginResult(**result)

    @staticmethod
    def _abi_stable(current: str, wanted: str) -> str:
        """``wanted`` (a destination XML) if it keeps ``current``'s guest ABI."""
        try:
            domxml.check_abi_stable(current, wanted)
        except domxml.ABIMismatch as exc:
            raise DriverError(str(exc), exc.code) from None
        return wanted

    def _started_job(self, job: MigrationJob) -> dict[str, Any]:
        """The outgoing job whose transfer Perform started; libvirt's "not being migrated"
        error when there is none."""
        out = self.state.outgoing.get(job.migration_id)
        if out is None or "started_at" not in out:
            raise DriverError(f"domain '{job.domain}' is not being migrated", "NOT_MIGRATING")
        return out

    def _transfer_to_abort(self, job: MigrationJob) -> dict[str, Any] | None:
        """The outgoing job whose transfer runs and may still be aborted (started, no result
        yet); None when there is nothing to abort."""
        out = self.state.outgoing.get(job.migration_id)
        if out is None or "started_at" not in out or "result" in out:
            return None
        return out

    @staticmethod
    def _stored_status(out: dict[str, Any]) -> TransferStatus:
        """The final status of an outgoing transfer, as recorded in its job."""
        result = out["result"]
        if "error" in result:
            code, message = result["error"]
            return TransferStatus(True, error=DriverError(message, code))
        progress = {"percent": 100.0, **{k: float(v) for k, v in result["stats"].items()}}
        return TransferStatus(True, progress=progress, cookie=result["cookie"])

    def _end_source_domain(self, job: MigrationJob, out: dict[str, Any]) -> None:
        """The source's copy after a hand-over: undefined with --undefine-source or when it was
        transient, else kept shut off; an offline migration leaves the source as it was."""
        dom = self.state.domains.get(job.domain)
        out["ended"] = True
        if dom is None:
            return
        if OFFLINE in job.flags:
            if UNDEFINE_SOURCE in job.flags and dom["state"] == "shutoff":
                del self.state.domains[job.domain]
            return
        if UNDEFINE_SOURCE in job.flags or not dom["persistent"]:
            del self.state.domains[job.domain]
        else:
            dom["state"] = "shutoff"

    def finish(self, job: MigrationJob, cookie: str | None, cancelled: bool) -> str | None:
        """Finish's bookkeeping, the same for every driver: nothing to do for a cancelled one
        that has nothing left, the recorded cookie for one that already ran; the rest is the
        driver's ``_finish_incoming``, under the state's lock."""
        with self.state.change():
            inc = self._incoming_to_finish(job, cancelled)
            if inc is None:
                return None
            if inc["status"] == "finished":
                return str(inc["result_cookie"])
            return self._finish_incoming(job, inc, cookie, cancelled)

    @abc.abstractmethod
    def _finish_incoming(
        self, job: MigrationJob, inc: dict[str, Any], cookie: str | None, cancelled: bool
    ) -> str | None:
        """Start (or, ``cancelled``, remove) what ``inc`` received; the cookie for Confirm."""

    def _incoming_to_finish(self, job: MigrationJob, cancelled: bool) -> dict[str, Any] | None:
        """The incoming job a Finish acts on; None when a cancelled Finish has nothing left to do.
        A Finish for a migration this host is not receiving is libvirt's "not processing" error."""
        inc = self.state.incoming.get(job.migration_id)
        if inc is None or inc["status"] == "aborted":
            if cancelled:
                return None
            raise DriverError(
                f"domain '{job.dest_name}' is not processing incoming migration", "NOT_MIGRATING"
            )
        return inc

    def migration_jobs(self) -> dict[str, dict[str, str]]:
        with self.state.lock:
            jobs = {
                mid: {"role": "outgoing", "domain": out["domain"]}
                for mid, out in self.state.outgoing.items()
                if not out.get("ended")
            }
            jobs.update(
                {
                    mid: {"role": "incoming", "domain": inc["origname"]}
                    for mid, inc in self.state.incoming.items()
                    if inc["status"] in ("prepared", "received")
                }
            )
            return jobs

    def _prepared_ports(self) -> set[int]:
        """Ports that this host's prepared migrations hold."""
        held = set()
        for j in self.state.incoming.values():
            if j["status"] == "prepared":
                held |= {p for p in (j.get("port"), j.get("nbd_port")) if p}
        return held

    # libvirt's checks before it takes a domain ------------------------------------------------
    def _check_conflicts(self, name: str, uuid: str | None, migration_id: str) -> None:
        """libvirt's virDomainObjListAdd checks: same name or uuid already here."""
        existing = self.state.domains.get(name)
        if existing is not None:
            if existing["state"] != "shutoff":
                raise DomainConflict(f"domain '{name}' is already active on {self.config.host}")
            if uuid and existing["uuid"] != uuid:
                raise DomainConflict(f"domain '{name}' already exists with uuid {existing['uuid']}")
        for other, dom in self.state.domains.items():
            if uuid and dom["uuid"] == uuid and other != name:
                raise DomainConflict(f"domain '{other}' is already defined with uuid {uuid}")
        if self.state.incoming_for(name) not in (None, migration_id):
            raise JobBusy(f"domain '{name}' is already processing an incoming migration")

    def _check_room(self, memory_kib: int, what: str | None = None) -> None:
        if self.state.reserved_memory_kib() + memory_kib > self.config.memory_mib * 1024:
            detail = f"to start '{what}'" if what else f"for {memory_kib // 1024} MiB"
            raise NoCapacity(f"host {self.config.host} has not enough free memory {detail}")

    # Domain management -------------------------------------------------------------------
    def _validate(self, dom: domxml.Domain) -> None:
        """What this driver refuses in a definition (by element name), before anything is kept."""

    def _check_host_paths(self, xml: str, where: str) -> None:
        """Refuse a definition naming host files outside the storage roots (a driver whose
        hypervisor opens them calls this at define, start and Prepare)."""
        check_host_paths(safexml.parse(xml, "domain XML"), self.config.storage_roots, where)

    def define(self, xml: str) -> DomainInfo:
        dom = domxml.parse_domain(xml, assign_uuid=True)
        self._validate(dom)
        with self.state.change() as s:
            for name, other in s.domains.items():
                if other["uuid"] == dom.uuid and name != dom.name:
                    raise DomainConflict(f"domain '{name}' is already defined with uuid {dom.uuid}")
            old = s.domains.get(dom.name)
            if old and old["uuid"] != dom.uuid:
                raise DomainConflict(f"domain '{dom.name}' already exists with uuid {old['uuid']}")
            s.domains[dom.name] = self._record(dom, old["state"] if old else "shutoff", True)
            return self._info(dom.name)

    def list_domains(self) -> list[DomainInfo]:
        with self.state.lock:
            return [self._info(name) for name in sorted(self.state.domains)]

    def domain_xml(self, name: str) -> str:
        with self.state.lock:
            return str(self._domain(name)["xml"])
