"""What the REST API answers, as pydantic models for its OpenAPI document (and for FastAPI to
check every answer against). Fields a newer release adds are allowed: a client ignores them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tasks.states import State


class Open(BaseModel):
    """An answer object: the fields below, and perhaps others a newer release added."""

    model_config = ConfigDict(extra="allow")


class PhaseOut(Open):
    name: str = Field(description="begin, prepare, perform, finish, confirm or dumpxml")
    host: str
    version: int = Field(description="the protocol version the phase ran under")
    cancelled: bool = Field(description="Finish/Confirm told that the migration failed")
    started: str | None
    ended: str | None
    outcome: str = Field(description="running, ok or failed")
    error: dict[str, str] | None


MIGRATION_EXAMPLE: dict[str, Any] = {
    "id": "7f0c5c1e-3a52-4d0e-9a37-0d4f6f8e2b11",
    "domain": "web",
    "source": "hv01",
    "destination": "hv02",
    "dname": None,
    "flags": ["live"],
    "bandwidth": None,
    "xml": None,
    "migrate_disks": [],
    "protocol": 3,
    "state": "completed",
    "attempt": 1,
    "step": None,
    "phases": [],
    "progress": {"percent": 100.0},
    "error": None,
    "warnings": [],
    "vm_host": "hv02",
    "priority": 0,
    "window": None,
    "not_before": None,
    "deadline": None,
    "cancel_requested": False,
    "callback": None,
    "created": "2026-12-01T12:00:00.000Z",
    "updated": "2026-12-01T12:00:04.512Z",
}


class MigrationOut(Open):
    """One migration, as ``vmigrate show --json`` prints it."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [MIGRATION_EXAMPLE]})

    id: str
    domain: str
    source: str
    destination: str
    dname: str | None = Field(description="the new name on the destination, if any")
    flags: list[str]
    bandwidth: int | None = Field(description="MiB/s")
    xml: str | None = Field(description="the destination XML asked for (v3 only)")
    migrate_disks: list[str] = Field(description="the disks to copy; empty: every writable disk")
    protocol: int | None = Field(description="the negotiated version; null until negotiated")
    state: State
    attempt: int
    step: dict[str, Any] | None = Field(description="the phase in flight (internal detail)")
    phases: list[PhaseOut]
    progress: dict[str, float] = Field(
        description="percent, data_total, data_remaining, downtime_ms... as the driver reports"
    )
    error: dict[str, str] | None = Field(description="`code` and `message` when it failed")
    warnings: list[str]
    vm_host: str | None = Field(description="where the VM runs now")
    priority: int
    window: str | None
    not_before: str | None
    deadline: str | None
    cancel_requested: bool
    callback: str | None = Field(default=None, description="the webhook URL the migration named")
    created: str
    updated: str


class HostOut(Open):
    name: str
    protocols: list[int]
    driver: str
    memory_mib: int
    vcpus: int
    host_uuid: str
    version: str = Field(description="the vmigrate release the host's worker runs")
    registered: str
    alive: bool
    drained: bool
    endpoint: dict[str, Any]
    copy_storage: bool = Field(description="the host can copy local disks (storage migration)")


class EvacuationItem(Open):
    domain: str
    destination: str | None
    id: str | None = Field(description="the migration's id; null when it was refused")
    error: dict[str, str] | None


class EvacuationOut(Open):
    host: str
    migrations: list[EvacuationItem]


class EventOut(Open):
    """One state change of one migration, as the events stream keeps it."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "event": "1764590404512-0",
                    "id": "7f0c5c1e-3a52-4d0e-9a37-0d4f6f8e2b11",
                    "state": "completed",
                    "previous": "confirm",
                    "domain": "web",
                    "source": "hv01",
                    "destination": "hv02",
                    "at": "2026-12-01T12:00:04.512Z",
                }
            ]
        },
    )

    event: str = Field(description="the stream id: give it as `since` or `Last-Event-ID`")
    id: str = Field(description="the migration's id")
    state: State
    previous: str = Field(description="the state before; empty for a new migration")
    domain: str
    source: str
    destination: str
    at: str
