"""Accepting a migration request: every check that can refuse it runs here, before any host acts.

The CLI, the Celery entry point and (later) the REST API all call ``submit``. A refused request
raises ``Refused`` with a stable code and touches neither host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from broker import keys
from broker.queues import InvalidHostName, check_host_name
from tasks.errors import Refused
from tasks.flags import validate_flags
from tasks.negotiation import Wants, negotiate
from tasks.publish import publish_start
from tasks.record import MigrationRecord, new_migration_id
from tasks.registry import HostInfo, get_host, read_inventory
from tasks.runtime import runtime
from workers import domxml, safexml
from workers.drivers.base import OFFLINE

MAX_BANDWIDTH_MIBPS = 1_000_000
ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


@dataclass
class MigrationRequest:
    domain: str
    source: str
    destination: str
    dname: str | None = None
    xml: str | None = None
    flags: list[str] = field(default_factory=list)
    bandwidth: int | None = None
    id: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MigrationRequest:
        """Build a request from JSON (the Celery entry point, the API); unknown keys are refused."""
        if not isinstance(data, dict):
            raise Refused("INVALID_REQUEST", "a migration request must be a JSON object")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise Refused("INVALID_REQUEST", f"unknown field(s) in request: {', '.join(unknown)}")
        for name in ("domain", "source", "destination"):
            if not isinstance(data.get(name), str):
                raise Refused("INVALID_REQUEST", f"field {name!r} is required and must be a string")
        return cls(**data)


def _check_names(request: MigrationRequest) -> None:
    try:
        domxml.check_name(request.domain)
        if request.dname is not None:
            domxml.check_name(request.dname, "new name (--dname)")
        check_host_name(request.source)
        check_host_name(request.destination)
    except (domxml.InvalidDomain, InvalidHostName) as exc:
        raise Refused("INVALID_NAME", str(exc)) from None
    if request.source == request.destination:
        raise Refused("SAME_HOST", "source and destination are the same host")
    if request.id is not None and (
        not request.id or not set(request.id) <= ID_CHARS or len(request.id) > 64
    ):
        raise Refused("INVALID_ID", "a migration id is 1-64 letters, digits, '-' or '_'")


def _check_options(request: MigrationRequest) -> frozenset[str]:
    if not isinstance(request.flags, list) or not all(isinstance(f, str) for f in request.flags):
        raise Refused("INVALID_REQUEST", "flags must be a list of flag names")
    flags = validate_flags(frozenset(request.flags))
    bw = request.bandwidth
    if bw is not None and (
        isinstance(bw, bool) or not isinstance(bw, int) or not 0 < bw <= MAX_BANDWIDTH_MIBPS
    ):
        raise Refused(
            "INVALID_BANDWIDTH", f"bandwidth must be 1-{MAX_BANDWIDTH_MIBPS} MiB/s, not {bw!r}"
        )
    if request.xml is not None:
        try:
            parsed = domxml.parse_domain(request.xml, runtime().settings.max_xml_bytes)
        except (domxml.InvalidDomain, safexml.XMLRejected) as exc:
            raise Refused("INVALID_XML", f"destination XML (--xml): {exc}") from None
        if parsed.name != request.domain:
            raise Refused(
                "DEST_XML_RENAME",
                "the destination XML must keep the domain's name; use --dname to rename",
            )
    return flags


def _host(name: str, role: str) -> HostInfo:
    info = get_host(runtime().redis, name)
    if info is None:
        raise Refused("HOST_UNKNOWN", f"{role} host {name!r} is not registered")
    if not info.alive:
        raise Refused("HOST_DOWN", f"{role} host {name!r} is not alive (no recent heartbeat)")
    return info


def _check_domain(request: MigrationRequest, flags: frozenset[str]) -> None:
    inventory = read_inventory(runtime().redis, request.source) or []
    found = next((d for d in inventory if d["name"] == request.domain), None)
    if found is None:
        raise Refused(
            "DOMAIN_NOT_FOUND", f"host {request.source!r} has no domain {request.domain!r}"
        )
    if OFFLINE not in flags and found["state"] == "shutoff":
        raise Refused(
            "DOMAIN_NOT_RUNNING",
            f"domain {request.domain!r} is shut off on {request.source!r}; "
            "use --offline --persist to move its definition",
        )


def submit(request: MigrationRequest) -> MigrationRecord:
    """Validate ``request``, record it and hand it to a dispatcher. Raises ``Refused``."""
    _check_names(request)
    flags = _check_options(request)
    source, destination = _host(request.source, "source"), _host(request.destination, "destination")
    wants = Wants.of(request.dname, request.xml, flags)
    candidates = negotiate(frozenset(source.protocols), frozenset(destination.protocols), wants)
    _check_domain(request, flags)
    record = MigrationRecord(
        id=request.id or new_migration_id(),
        domain=request.domain,
        source=request.source,
        destination=request.destination,
        dname=request.dname,
        flags=sorted(flags),
        bandwidth=request.bandwidth,
        xml=request.xml,
        candidates=candidates,
    )
    client = runtime().redis
    guard = keys.active_domain(record.source, record.domain)
    if not client.set(guard, record.id, nx=True):
        holder = client.get(guard) or "unknown"
        raise Refused(
            "MIGRATION_IN_PROGRESS",
            f"another migration ({holder!s}) is already running for domain {record.domain!r} "
            f"on {record.source!r}",
        )
    if not runtime().store.create(record):
        client.delete(guard)
        raise Refused("DUPLICATE_ID", f"a migration with id {record.id!r} already exists")
    publish_start(record.id)
    return record
