"""The migration record: what a user reads with ``vmigrate show``, and the source of truth.

``step`` is the one phase message in flight. Its ``seq`` and the record's ``attempt`` are the
fencing token every phase task checks before it acts, so a redelivered or duplicated message, or
one from an abandoned attempt, changes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from tasks.compat import known_fields
from tasks.states import TERMINAL, State, check_transition


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch(iso: str | None) -> float:
    """A record's time (``now_iso``) as epoch seconds; 0 when absent."""
    if not iso:
        return 0.0
    return dt.datetime.fromisoformat(iso).timestamp()  # 3.11 reads the trailing Z


def new_migration_id() -> str:
    return str(uuid.uuid4())


@dataclass
class PhaseRun:
    name: str
    host: str
    version: int
    cancelled: bool = False
    started: str | None = None
    ended: str | None = None
    outcome: str = "running"  # running | ok | failed
    error: dict[str, str] | None = None


@dataclass
class StepState:
    seq: int
    phase: str
    cancelled: bool
    status: str = "sent"  # sent | running | polling | done
    poll: int = 0
    touched: float = field(default_factory=time.time)  # last sign of life (claim, poll, resend)


@dataclass
class MigrationRecord:
    id: str
    domain: str
    source: str
    destination: str
    dname: str | None = None
    flags: list[str] = field(default_factory=list)
    bandwidth: int | None = None
    xml: str | None = None  # the destination XML the user asked for (v3 only)
    migrate_disks: list[str] = field(default_factory=list)  # with copy_storage_*; []: all
    protocol: int | None = None
    candidates: list[int] = field(default_factory=list)
    state: str = State.PENDING.value
    attempt: int = 0
    step: StepState | None = None
    phases: list[PhaseRun] = field(default_factory=list)
    progress: dict[str, float] = field(default_factory=dict)
    error: dict[str, str] | None = None
    warnings: list[str] = field(default_factory=list)
    vm_host: str | None = None
    fallback_to: int | None = None
    todo: list[list[Any]] = field(default_factory=list)  # compensating steps still to run
    priority: int = 0
    window: str | None = None
    not_before: str | None = None
    deadline: str | None = None
    cancel_requested: bool = False
    callback: str | None = None  # a webhook URL for this migration's state changes
    exchange: dict[str, Any] = field(default_factory=dict)  # cookie, uri, dom_xml between phases
    created: str = field(default_factory=now_iso)
    updated: str = field(default_factory=now_iso)

    def __post_init__(self) -> None:
        if self.vm_host is None:
            self.vm_host = self.source

    @property
    def terminal(self) -> bool:
        return State(self.state) in TERMINAL

    @property
    def admitted(self) -> bool:
        """Past admission and not ended: the sweeper watches it."""
        return not self.terminal and State(self.state) not in {State.QUEUED, State.WAITING}

    def move_to(self, new: State) -> None:
        self.state = check_transition(State(self.state), new).value
        self.updated = now_iso()

    def public(self) -> dict[str, Any]:
        """The object ``vmigrate show --json`` prints (the exchange stays internal)."""
        data = dataclasses.asdict(self)
        data.pop("exchange")
        data.pop("candidates")
        data.pop("fallback_to")
        data.pop("todo")
        return data

    def to_json(self) -> str:
        return orjson.dumps(self).decode()  # dataclasses natively, several times faster

    @classmethod
    def from_json(cls, text: str) -> MigrationRecord:
        """Load a record; fields written by another vmigrate version and unknown here are ignored,
        so old and new components can share records during an upgrade."""
        data = orjson.loads(text)
        step = data.pop("step")
        phases = data.pop("phases")
        record = cls(**known_fields(cls, data))
        record.step = StepState(**known_fields(StepState, step)) if step else None
        record.phases = [PhaseRun(**known_fields(PhaseRun, p)) for p in phases]
        return record
