"""The hypervisor driver interface: one method per migration phase and side, as nova's virt driver.

Drivers know nothing of Celery, Redis or the fleet. They receive a ``MigrationJob`` (plain data from
the phase message) and return plain results. Every phase method is idempotent for one migration id:
called again with the same job it returns the same result and does nothing twice.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from workers.drivers.flags import Flag

DomainState = Literal["running", "paused", "shutoff"]

# libvirt's migration flags (declared in workers/drivers/flags.py), by the names drivers use.
LIVE = Flag.LIVE
PAUSED = Flag.PAUSED
PERSIST_DEST = Flag.PERSIST
UNDEFINE_SOURCE = Flag.UNDEFINE_SOURCE
OFFLINE = Flag.OFFLINE
ABORT_ON_ERROR = Flag.ABORT_ON_ERROR
AUTO_CONVERGE = Flag.AUTO_CONVERGE
POSTCOPY = Flag.POSTCOPY
COPY_STORAGE_ALL = Flag.COPY_STORAGE_ALL
COPY_STORAGE_INC = Flag.COPY_STORAGE_INC


class DriverError(Exception):
    """A phase failed. ``code`` is stable and machine-readable; the message is a sentence."""

    code = "DRIVER_ERROR"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code


class VersionUnsupported(DriverError):
    code = "VERSION_UNSUPPORTED"


class DomainNotFound(DriverError):
    code = "DOMAIN_NOT_FOUND"


class JobBusy(DriverError):
    code = "MIGRATION_JOB_BUSY"


class NoCapacity(DriverError):
    code = "NO_CAPACITY"


class DomainConflict(DriverError):
    code = "DOMAIN_CONFLICT"


class InjectedFault(DriverError):
    code = "INJECTED_FAULT"


@dataclass(frozen=True)
class Capabilities:
    driver: str
    protocols: frozenset[int]
    memory_mib: int
    vcpus: int
    offline: bool = True
    #: Copies local disks with the memory (``--copy-storage-all`` / ``--copy-storage-inc``).
    copy_storage: bool = False


@dataclass(frozen=True)
class DomainInfo:
    name: str
    uuid: str
    state: DomainState
    memory_kib: int
    vcpus: int
    persistent: bool
    #: Its disks (what ``--migrate-disks`` may name); published since 0.4, absent before.
    disks: tuple[dict[str, object], ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "uuid": self.uuid,
            "state": self.state,
            "memory_kib": self.memory_kib,
            "vcpus": self.vcpus,
            "persistent": self.persistent,
            "disks": list(self.disks),
        }


@dataclass(frozen=True)
class MigrationJob:
    """What every phase knows about the migration it serves."""

    migration_id: str
    version: int
    domain: str
    source: str
    destination: str
    dname: str | None = None
    flags: frozenset[str] = frozenset()
    bandwidth_mibps: int | None = None
    #: Disks (by target) to copy with ``copy_storage_*``; empty: every writable disk.
    migrate_disks: tuple[str, ...] = ()

    @property
    def dest_name(self) -> str:
        return self.dname or self.domain


@dataclass(frozen=True)
class BeginResult:
    xml: str
    cookie: str
    state: DomainState


@dataclass(frozen=True)
class PrepareResult:
    uri: str
    cookie: str | None


@dataclass(frozen=True)
class TransferStatus:
    """Progress of an outgoing migration; ``done`` and ``error`` are final."""

    done: bool
    error: DriverError | None = None
    progress: dict[str, float] = field(default_factory=dict)
    cookie: str | None = None


class Driver(abc.ABC):
    """One hypervisor on one host."""

    #: Domains change outside vmigrate (an operator's virsh, a guest that shuts itself down):
    #: the worker then re-reads the inventory with every heartbeat.
    CHANGES_OUTSIDE: bool = False
    #: Set by ``watch_transfers``; called with a migration id when its transfer ends by itself.
    _on_transfer_end: Callable[[str], None] | None = None

    @abc.abstractmethod
    def capabilities(self) -> Capabilities: ...

    @property
    @abc.abstractmethod
    def host_uuid(self) -> str: ...

    def watch_transfers(self, on_end: Callable[[str], None]) -> None:
        """Have ``on_end(migration_id)`` called when an outgoing transfer ends by itself (a
        driver whose transfer runs on a thread knows the moment), so that it is polled at once
        instead of at the next interval."""
        self._on_transfer_end = on_end

    def _transfer_ended(self, migration_id: str) -> None:
        if self._on_transfer_end is not None:
            try:
                self._on_transfer_end(migration_id)
            except Exception:  # the regular poll still comes
                logging.getLogger(__name__).warning("early poll failed", exc_info=True)

    def endpoint(self) -> dict[str, object]:
        """How peers reach this host (registered beside it): address, ports, daemon URI."""
        return {}

    @abc.abstractmethod
    def migration_jobs(self) -> dict[str, dict[str, str]]:
        """Unfinished migration jobs on this host: id -> {"role": outgoing|incoming, "domain"}."""

    # Domain management -------------------------------------------------------------------
    @abc.abstractmethod
    def define(self, xml: str) -> DomainInfo: ...

    @abc.abstractmethod
    def start(self, name: str) -> DomainInfo: ...

    @abc.abstractmethod
    def list_domains(self) -> list[DomainInfo]: ...

    @abc.abstractmethod
    def domain_xml(self, name: str) -> str: ...

    def set_faults(self, phases: list[str]) -> list[str]:
        """Make this host fail ``phases`` of every migration (``vmigrate fault``); the phases it
        fails now. Only a test driver does (the sim); the others refuse."""
        raise DriverError("this driver takes no injected faults", "UNSUPPORTED")

    # Source side --------------------------------------------------------------------------
    @abc.abstractmethod
    def begin(self, job: MigrationJob, xmlin: str | None) -> BeginResult:
        """v3: take the outgoing job, return the XML to send and cookie A."""

    @abc.abstractmethod
    def perform(self, job: MigrationJob, cookie: str | None, uri: str) -> None:
        """Start sending the domain to ``uri``; return at once (progress is polled)."""

    @abc.abstractmethod
    def perform_status(self, job: MigrationJob) -> TransferStatus:
        """Poll the outgoing transfer started by ``perform``."""

    @abc.abstractmethod
    def abort_outgoing(self, job: MigrationJob) -> None:
        """Cancel a running transfer (libvirt's abortJob); the source resumes, status reports it."""

    @abc.abstractmethod
    def confirm(self, job: MigrationJob, cookie: str | None, cancelled: bool) -> None:
        """v3: end the source domain, or resume it when ``cancelled``."""

    @abc.abstractmethod
    def destroy_source(self, job: MigrationJob) -> None:
        """Roll forward: the destination owns the VM, so end the source copy by force."""

    # Destination side --------------------------------------------------------------------
    @abc.abstractmethod
    def prepare(self, job: MigrationJob, cookie: str | None, dom_xml: str | None) -> PrepareResult:
        """Get ready to receive; ``dom_xml`` is None in v1 (the stream carries it)."""

    @abc.abstractmethod
    def finish(self, job: MigrationJob, cookie: str | None, cancelled: bool) -> str | None:
        """Start the received domain (returns a cookie), or destroy it when ``cancelled``."""

    @abc.abstractmethod
    def abort_incoming(self, job: MigrationJob) -> None:
        """Remove whatever Prepare created for ``job`` (v1 has no cancelled Finish)."""
