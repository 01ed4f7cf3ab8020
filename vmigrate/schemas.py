"""Request bodies of the REST API, validated by pydantic (unknown fields are refused)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

FLAG_FIELDS = (
    "live",
    "paused",
    "persist",
    "undefine_source",
    "offline",
    "auto_converge",
    "abort_on_error",
    "postcopy",
)


class MigrationIn(BaseModel):
    """The options of ``vmigrate migrate`` under their long names (dashes or underscores)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    domain: str = Field(min_length=1, max_length=64)
    source: str = Field(min_length=1, max_length=63)
    destination: str = Field(min_length=1, max_length=63)
    dname: str | None = Field(default=None, max_length=64)
    xml: str | None = Field(default=None, max_length=1_048_576)
    bandwidth: int | None = Field(default=None, gt=0, le=1_000_000, description="MiB/s")
    id: str | None = Field(default=None, max_length=64)
    priority: int = Field(default=0, ge=-1000, le=1000)
    window: str | None = None
    not_before: str | None = Field(default=None, alias="not-before")
    deadline: str | None = None
    flags: list[str] = Field(default_factory=list, max_length=16)
    live: bool = False
    paused: bool = False
    persist: bool = False
    undefine_source: bool = Field(default=False, alias="undefine-source")
    offline: bool = False
    auto_converge: bool = Field(default=False, alias="auto-converge")
    abort_on_error: bool = Field(default=False, alias="abort-on-error")
    postcopy: bool = False


class EvacuateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: list[str] | None = Field(default=None, max_length=1000)
    window: str | None = None
    drain: bool = False


def request_from(body: MigrationIn) -> Any:
    from tasks.submission import MigrationRequest  # noqa: PLC0415

    flags = sorted(set(body.flags) | {f for f in FLAG_FIELDS if getattr(body, f)})
    return MigrationRequest(
        domain=body.domain,
        source=body.source,
        destination=body.destination,
        dname=body.dname,
        xml=body.xml,
        flags=flags,
        bandwidth=body.bandwidth,
        id=body.id,
        priority=body.priority,
        window=body.window,
        not_before=body.not_before,
        deadline=body.deadline,
    )
