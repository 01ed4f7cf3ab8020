"""Reading the events stream: every state change of every migration, in order (Redis stream
``keys.events()``, written by the record store). Its readers (``GET /v1/events``, the SSE stream,
``vmigrate events``, ``migrate --wait``, webhooks) each start after a stream id."""

from __future__ import annotations

from typing import Any

from broker import keys
from broker.connection import Client
from tasks.states import TERMINAL

TERMINAL_STATES = frozenset(state.value for state in TERMINAL)
#: The position before every event.
START = "0-0"


def latest_event_id(client: Client) -> str:
    """The id of the newest event (``0-0`` if none): reading after it gives what comes next."""
    found: Any = client.xrevrange(keys.events(), count=1)
    return str(found[0][0]) if found else START


def order(event_id: str) -> tuple[int, int]:
    """A stream id as what it sorts by (``0`` is ``0-0``)."""
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def as_event(event_id: str, fields: dict[str, str]) -> dict[str, str]:
    """One event as the API and webhooks give it: its stream id, then the state change."""
    return {"event": event_id, **fields}


def concerns(fields: dict[str, str], migration_id: str | None) -> bool:
    """The event is about ``migration_id`` (every event is, for ``None``)."""
    return migration_id is None or fields.get("id") == migration_id


def ends(fields: dict[str, str], migration_id: str) -> bool:
    """The event is ``migration_id`` reaching a final state."""
    return fields.get("id") == migration_id and fields.get("state") in TERMINAL_STATES
