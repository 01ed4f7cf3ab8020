"""The libvirt driver, shared part: a host's libvirtd, reached by URI, holds the domains.

libvirt-python cannot call the per-phase migration functions (they are internal to libvirt), so
the driver does what nova and KubeVirt do: vmigrate's phases are hooks around libvirt's own
peer-to-peer migration (``migrateToURI3``), which the source daemon runs against the destination
daemon. Begin and Prepare check and reserve, Perform starts libvirt's migration on a thread the
worker owns, polls read ``jobStats``, Finish and Confirm check what libvirt did (and undo it when
cancelled). v3 only: see docs/libvirt-driver.md. The domains are libvirt's; ``HostState`` keeps
only vmigrate's migration jobs, so a restarted worker finds them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lxml import etree

from workers import domxml, safexml
from workers.disks import disks_in_xml
from workers.drivers.base import (
    Capabilities,
    DomainConflict,
    DomainInfo,
    DomainNotFound,
    DomainState,
    DriverError,
)
from workers.drivers.libvirt import mapping
from workers.drivers.libvirt.binding import libvirt
from workers.drivers.shared.config import HostConfig
from workers.drivers.shared.host import HostDriver

INSTALL = "pip install 'vmigrate[libvirt]' (needs libvirt-dev, pkg-config and a compiler)"


@dataclass(frozen=True)
class LibvirtConfig(HostConfig):
    #: The local daemon, as this worker reaches it.
    uri: str = "qemu:///system"
    #: How peer daemons reach it (the destination URI of a peer-to-peer migration).
    peer_uri: str = ""
    completion_timeout_per_gib: float = 150.0


def peer_uri_of(uri: str, migration_address: str) -> str:
    """The URI peers use when none is configured: the local URI itself when it names a host or a
    socket, else ``qemu+tcp://<migration address>/system`` (nova's default scheme)."""
    local = uri.split("?", 1)[0]
    if "://" in local and local.split("://", 1)[1].startswith("/") and "socket=" not in uri:
        host = f"[{migration_address}]" if ":" in migration_address else migration_address
        return f"qemu+tcp://{host}/system"
    return uri


def libvirt_error(exc: Exception, what: str) -> DriverError:
    """A libvirt error as a DriverError with a stable code."""
    code = exc.get_error_code() if hasattr(exc, "get_error_code") else None
    message = f"{what}: {exc}"
    if libvirt is not None and code == libvirt.VIR_ERR_NO_DOMAIN:
        return DomainNotFound(message)
    if libvirt is not None and code == libvirt.VIR_ERR_OPERATION_ABORTED:
        return DriverError(message, "OPERATION_ABORTED")
    return DriverError(message, "LIBVIRT_ERROR")


class LibvirtBase(HostDriver):
    NAME = "libvirt"
    COPIES_STORAGE = True
    SUPPORTED = frozenset({3})
    CHANGES_OUTSIDE = True
    config: LibvirtConfig

    def __init__(self, config: LibvirtConfig) -> None:
        super().__init__(config)
        self._lock = threading.Lock()
        self._connection: Any = None
        self._host_uuid: str | None = None

    # The daemon ------------------------------------------------------------------------------
    def conn(self) -> Any:
        """The connection to the local daemon, reopened when it broke (libvirtd restarted).
        A round trip tells: a client sees a closed socket only when it next uses it."""
        with self._lock:
            if self._connection is not None:
                try:
                    self._connection.getLibVersion()
                    return self._connection
                except libvirt.libvirtError:
                    self._connection = None
            try:
                self._connection = libvirt.open(self.config.uri)
            except libvirt.libvirtError as exc:
                raise DriverError(
                    f"cannot reach libvirtd at {self.config.uri}: {exc}", "HYPERVISOR_UNAVAILABLE"
                ) from None
            return self._connection

    def _daemon_uri(self) -> str | None:
        return self.config.peer_uri or peer_uri_of(self.config.uri, self.config.migration_address)

    @property
    def host_uuid(self) -> str:
        """libvirt's host UUID, from the capabilities XML (libvirt refuses a migration to itself
        by it, so vmigrate's cookies carry the same one)."""
        if self._host_uuid is None:
            caps = safexml.parse(self.conn().getCapabilities(), "capabilities", 16 * 1024 * 1024)
            self._host_uuid = (caps.findtext("host/uuid") or "").strip() or self.state.host_uuid
        return self._host_uuid

    def capabilities(self) -> Capabilities:
        _, memory_mib, cpus, *_ = self.conn().getInfo()
        return Capabilities(
            self.NAME,
            self.config.protocols & self.SUPPORTED,
            memory_mib,
            cpus,
            copy_storage=self.COPIES_STORAGE,
        )

    # Domains ---------------------------------------------------------------------------------
    def lookup(self, name: str) -> Any:
        """The domain called ``name`` on this host; ``DomainNotFound`` when there is none."""
        dom = self.find_name(self.conn(), name)
        if dom is None:
            raise DomainNotFound(f"no domain with matching name '{name}' on {self.config.host}")
        return dom

    @staticmethod
    def find_name(conn: Any, name: str) -> Any:
        """The domain called ``name`` on ``conn``, or None."""
        return _find(lambda: conn.lookupByName(name), f"domain '{name}'")

    @staticmethod
    def find_uuid(conn: Any, uuid: str) -> Any:
        """The domain with ``uuid`` on ``conn``, or None."""
        return _find(lambda: conn.lookupByUUIDString(uuid), f"domain {uuid}")

    @staticmethod
    def state_of(dom: Any) -> DomainState:
        return mapping.state_of(dom.state()[0])

    def _as_info(self, dom: Any) -> DomainInfo:
        _, max_kib, _, vcpus, _ = dom.info()
        state = self.state_of(dom)
        disks = tuple(d.as_dict() for d in disks_in_xml(dom.XMLDesc(0)))
        return DomainInfo(
            dom.name(), dom.UUIDString(), state, max_kib, vcpus, dom.isPersistent(), disks
        )

    def _current_state(self, name: str) -> DomainState:
        return self.state_of(self.lookup(name))

    def list_domains(self) -> list[DomainInfo]:
        infos = []
        for dom in self.conn().listAllDomains(0):
            try:
                infos.append(self._as_info(dom))
            except libvirt.libvirtError:  # gone while listing
                continue
        return sorted(infos, key=lambda d: d.name)

    def domain_xml(self, name: str) -> str:
        return str(self.lookup(name).XMLDesc(0))

    def define(self, xml: str) -> DomainInfo:
        parsed = domxml.parse_domain(xml, assign_uuid=True)  # bounded and entity-free
        self._check_host_paths(parsed.xml, "define")
        conn = self.conn()
        same = self.find_uuid(conn, parsed.uuid)
        if same is not None and same.name() != parsed.name:
            raise DomainConflict(
                f"domain '{same.name()}' is already defined with uuid {parsed.uuid}"
            )
        try:
            dom = conn.defineXMLFlags(parsed.xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        except libvirt.libvirtError as exc:
            raise DriverError(f"libvirt refused the definition: {exc}", "INVALID_DOMAIN") from None
        return self._as_info(dom)

    def start(self, name: str) -> DomainInfo:
        dom = self.lookup(name)
        if dom.isActive():
            raise DriverError(f"domain '{name}' is already active", "DOMAIN_ACTIVE")
        try:
            dom.create()
        except libvirt.libvirtError as exc:
            raise libvirt_error(exc, f"starting domain '{name}'") from None
        return self._as_info(dom)

    def peer(self, uri: str) -> Any:
        """A connection to another host's daemon (closed by the caller)."""
        try:
            return libvirt.open(uri)
        except libvirt.libvirtError as exc:
            raise DriverError(
                f"cannot reach the peer daemon at {uri}: {exc}", "HYPERVISOR_UNAVAILABLE"
            ) from None


def _find(lookup: Callable[[], Any], what: str) -> Any:
    """``lookup()``, or None when libvirt has no such domain; other errors as DriverError."""
    try:
        return lookup()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise libvirt_error(exc, f"looking up {what}") from None


def cpu_element(xml: str) -> str | None:
    """The domain's ``<cpu>`` with a named model, for libvirt's CPU comparison; None when the
    domain asks for no particular model (nothing to compare)."""
    root = safexml.parse(xml, "domain XML")
    cpu = root.find("cpu")
    if cpu is None or cpu.find("model") is None:
        return None
    return str(etree.tostring(cpu, encoding="unicode"))
