"""Request bodies of the REST API, validated by pydantic (unknown fields are refused)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from broker.callback_urls import MAX_URL_LENGTH
from tasks.bounds import (
    DEFAULT_MAX_XML_BYTES,
    MAX_BANDWIDTH_MIBPS,
    MAX_ID_LENGTH,
    MAX_MIGRATE_DISKS,
    MAX_PRIORITY,
    MIN_PRIORITY,
)
from tasks.submission import MigrationRequest
from workers.drivers.flags import Flag


class MigrationFields(BaseModel):
    """The options of ``vmigrate migrate`` under their long names (dashes or underscores); the
    flags are added from ``workers.drivers.flags.Flag`` (``MigrationIn``)."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {"domain": "web", "source": "hv01", "destination": "hv02", "live": True},
                {
                    "domain": "db",
                    "source": "hv01",
                    "destination": "hv03",
                    "live": True,
                    "copy-storage-all": True,
                    "bandwidth": 500,
                    "window": "nights",
                    "callback": "https://cloud.example.com/hooks/vmigrate/db",
                },
            ]
        },
    )

    domain: str = Field(min_length=1, max_length=64)
    source: str = Field(min_length=1, max_length=63)
    destination: str = Field(min_length=1, max_length=63)
    dname: str | None = Field(default=None, max_length=64)
    xml: str | None = Field(default=None, max_length=DEFAULT_MAX_XML_BYTES)
    bandwidth: int | None = Field(default=None, gt=0, le=MAX_BANDWIDTH_MIBPS, description="MiB/s")
    id: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    priority: int = Field(default=0, ge=MIN_PRIORITY, le=MAX_PRIORITY)
    window: str | None = None
    not_before: str | None = Field(default=None, alias="not-before")
    deadline: str | None = None
    flags: list[str] = Field(default_factory=list, max_length=16)
    callback: str | None = Field(
        default=None,
        max_length=MAX_URL_LENGTH,
        description="a URL under the fleet's webhook allow-list: it receives each state change "
        "of this migration as a signed JSON POST (see docs/webhooks.md)",
        examples=["https://cloud.example.com/hooks/vmigrate"],
    )
    migrate_disks: list[str] | None = Field(
        default=None,
        alias="migrate-disks",
        max_length=MAX_MIGRATE_DISKS,
        description="with copy-storage-all/-inc: the disk targets to copy (default: every "
        "writable disk)",
    )


#: The request body: the fields above and one boolean per migration flag.
MigrationIn = create_model(  # type: ignore[call-overload]
    "MigrationIn",
    __base__=MigrationFields,
    **{
        flag.value: (bool, Field(default=False, alias=flag.option, description=flag.meaning))
        for flag in Flag
    },
)


class ErrorDetail(BaseModel):
    code: str = Field(description="stable and machine-readable, e.g. HOST_DOWN, INVALID_FLAGS")
    message: str = Field(description="a sentence saying what is wrong")


class ErrorOut(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail


#: An error answer's body in the OpenAPI document, for an operation whose success is not JSON
#: (FastAPI would document its errors in the success's media type).
ERROR_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}


def errors(*statuses: int, streams: bool = False) -> dict[int | str, dict[str, Any]]:
    """The error answers an operation can give, for its OpenAPI document: every operation can
    answer 401 (no valid bearer token) and 422 (a parameter or body outside its schema).
    ``streams``: the operation's success is an event stream, its errors still JSON."""
    meaning = {
        400: "refused before any host acted; `code` says why",
        401: "no valid bearer token (`Authorization: Bearer TOKEN`)",
        404: "no such migration or host",
        409: "the id is taken, or the migration's state forbids it",
        422: "a parameter or the body does not match its schema",
    }
    body: dict[str, Any] = {"content": ERROR_JSON} if streams else {"model": ErrorOut}
    return {
        status: {**body, "description": meaning[status]} for status in sorted({401, 422, *statuses})
    }


class EvacuateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: list[str] | None = Field(default=None, max_length=1000)
    window: str | None = None
    drain: bool = False


def request_from(body: MigrationFields) -> Any:
    flags = sorted(set(body.flags) | {f.value for f in Flag if getattr(body, f.value)})
    return MigrationRequest(
        domain=body.domain,
        source=body.source,
        destination=body.destination,
        dname=body.dname,
        xml=body.xml,
        flags=flags,
        bandwidth=body.bandwidth,
        migrate_disks=body.migrate_disks,
        id=body.id,
        priority=body.priority,
        window=body.window,
        not_before=body.not_before,
        deadline=body.deadline,
        callback=body.callback,
    )
