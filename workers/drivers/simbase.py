"""What both sides of the sim driver share: configuration, state, domain management, cookies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers import domxml
from workers.cookie import Cookie, CookieRejected, validate_cookie
from workers.drivers import stream
from workers.drivers.base import (
    Capabilities,
    DomainConflict,
    DomainInfo,
    DomainNotFound,
    Driver,
    DriverError,
    InjectedFault,
    JobBusy,
    MigrationJob,
    NoCapacity,
    TransferStatus,
)
from workers.drivers.simknobs import read_knobs
from workers.drivers.simstate import SimState
from workers.safexml import XMLRejected


@dataclass(frozen=True)
class SimConfig:
    host: str
    state_dir: Path
    protocols: frozenset[int] = frozenset({1, 2, 3})
    memory_mib: int = 262144
    vcpus: int = 256
    link_mibps: float = 100000.0
    max_downtime_s: float = 0.3
    time_scale: float = 1.0
    migration_address: str = "127.0.0.1"
    ports: range = range(49152, 49216)
    host_uuid: str | None = None


class SimBase(Driver):
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.state = SimState(config.state_dir, config.host_uuid)
        self._listeners: dict[str, stream.IncomingListener] = {}

    # Facts -----------------------------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        return Capabilities("sim", self.config.protocols, self.config.memory_mib, self.config.vcpus)

    @property
    def host_uuid(self) -> str:
        return self.state.host_uuid

    def _info(self, name: str) -> DomainInfo:
        d = self.state.domains[name]
        return DomainInfo(name, d["uuid"], d["state"], d["memory_kib"], d["vcpus"], d["persistent"])

    def _domain(self, name: str) -> dict[str, Any]:
        if name not in self.state.domains:
            raise DomainNotFound(f"no domain with matching name '{name}' on {self.config.host}")
        return self.state.domains[name]

    def _cookie(self, name: str, uuid: str | None, stats: dict[str, int] | None = None) -> str:
        return Cookie(name, uuid, self.config.host, self.host_uuid, statistics=stats or {}).to_xml()

    def _check_cookie(
        self, text: str | None, phase: str, name: str, uuid: str, uuid_optional: bool = False
    ) -> None:
        if text is None:
            raise DriverError(f"{phase} needs a migration cookie and got none", "COOKIE_REJECTED")
        try:
            validate_cookie(
                text,
                phase=phase,
                expect_name=name,
                expect_uuid=uuid,
                local_host_uuid=self.host_uuid,
                uuid_optional=uuid_optional,
            )
        except (CookieRejected, XMLRejected) as exc:
            raise DriverError(str(exc), exc.code) from None

    @staticmethod
    def _fault(xml: str | None, phase: str) -> None:
        if phase in read_knobs(xml).faults:
            raise InjectedFault(f"fault injected in {phase} by the domain's sim metadata")

    @staticmethod
    def _stored_status(out: dict[str, Any]) -> TransferStatus:
        """The final status of an outgoing transfer, as recorded in its job (either driver)."""
        result = out["result"]
        if "error" in result:
            code, message = result["error"]
            return TransferStatus(True, error=DriverError(message, code))
        progress = {"percent": 100.0, **{k: float(v) for k, v in result["stats"].items()}}
        return TransferStatus(True, progress=progress, cookie=result["cookie"])

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

    def _check_room(self, memory_kib: int) -> None:
        if self.state.reserved_memory_kib() + memory_kib > self.config.memory_mib * 1024:
            raise NoCapacity(
                f"host {self.config.host} has not enough free memory for {memory_kib // 1024} MiB"
            )

    # Domain management -------------------------------------------------------------------
    def define(self, xml: str) -> DomainInfo:
        dom = domxml.parse_domain(xml, assign_uuid=True)
        read_knobs(dom.xml)
        with self.state.change() as s:
            for name, other in s.domains.items():
                if other["uuid"] == dom.uuid and name != dom.name:
                    raise DomainConflict(f"domain '{name}' is already defined with uuid {dom.uuid}")
            old = s.domains.get(dom.name)
            if old and old["uuid"] != dom.uuid:
                raise DomainConflict(f"domain '{dom.name}' already exists with uuid {old['uuid']}")
            state = old["state"] if old else "shutoff"
            s.domains[dom.name] = {
                "uuid": dom.uuid,
                "xml": dom.xml,
                "state": state,
                "memory_kib": dom.memory_kib,
                "vcpus": dom.vcpus,
                "persistent": True,
            }
            return self._info(dom.name)

    def start(self, name: str) -> DomainInfo:
        with self.state.change() as s:
            dom = self._domain(name)
            if dom["state"] != "shutoff":
                raise DriverError(f"domain '{name}' is already active", "DOMAIN_ACTIVE")
            needed = s.reserved_memory_kib() + dom["memory_kib"]
            if needed > self.config.memory_mib * 1024:
                raise NoCapacity(
                    f"host {self.config.host} has not enough free memory to start '{name}'"
                )
            dom["state"] = "running"
            return self._info(name)

    def list_domains(self) -> list[DomainInfo]:
        with self.state.lock:
            return [self._info(name) for name in sorted(self.state.domains)]

    def domain_xml(self, name: str) -> str:
        with self.state.lock:
            return str(self._domain(name)["xml"])
