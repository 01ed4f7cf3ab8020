"""Admission: which waiting migrations may start now, under per-host and fleet-wide limits.

The order is a pure function (higher priority first, ageing so nobody starves, then first come).
Taking slots is one Lua script over the slot table, so two dispatchers or two scheduler ticks
running at once can never exceed the limits: Redis runs scripts one at a time. Slots are derived
from the table of admitted migrations, never from counters that could drift; a slot whose migration
has ended (or vanished with a crashed dispatcher) is reclaimed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from broker import keys
from broker.connection import Client, text
from broker.settings import Settings
from tasks.lua import lua_script


@dataclass(frozen=True)
class Candidate:
    id: str
    source: str
    destination: str
    bandwidth: int = 0
    priority: int = 0
    created: float = 0.0  # epoch seconds


@dataclass(frozen=True)
class Limits:
    outbound_per_host: int
    inbound_per_host: int
    fleet: int
    bandwidth_per_host: int = 0

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            settings.outbound_per_host,
            settings.inbound_per_host,
            settings.fleet,
            settings.bandwidth_per_host_mibps,
        )


def effective_priority(candidate: Candidate, now: float, ageing_seconds: float) -> float:
    waited = max(0.0, now - candidate.created)
    return candidate.priority + (waited / ageing_seconds if ageing_seconds > 0 else 0.0)


def admission_order(
    candidates: list[Candidate], now: float, ageing_seconds: float
) -> list[Candidate]:
    return sorted(
        candidates, key=lambda c: (-effective_priority(c, now, ageing_seconds), c.created, c.id)
    )


def line_score(candidate: Candidate, ageing_seconds: float) -> float:
    """A static score whose ascending order is ``admission_order`` at any instant: everyone ages
    at the same rate, so comparing priority + waited/ageing is comparing this."""
    if ageing_seconds <= 0:
        return float(-candidate.priority)
    return candidate.created / ageing_seconds - candidate.priority


def reserved_bandwidth(candidate: Candidate, limits: Limits) -> int:
    """What a migration takes of a host's budget: its own cap, or an equal share."""
    if not limits.bandwidth_per_host:
        return 0
    share = max(1, limits.bandwidth_per_host // limits.outbound_per_host)
    return min(candidate.bandwidth or share, limits.bandwidth_per_host)


_ADMIT = lua_script("admit")  # KEYS and ARGV: see admit.lua


def take_slots(
    client: Client, ordered: list[Candidate], limits: Limits, only_if_queue_empty: bool = False
) -> list[str]:
    """Atomically admit what fits of ``ordered``; returns the admitted ids, in order."""
    payload = [{**asdict(c), "bandwidth": reserved_bandwidth(c, limits)} for c in ordered]
    admitted = client.eval(  # type: ignore[no-untyped-call]
        _ADMIT,
        2,
        keys.slots(),
        keys.queue(),
        json.dumps(asdict(limits)),
        json.dumps(payload),
        "1" if only_if_queue_empty else "0",
    )
    return [text(a) for a in admitted or []]


def release_slot(client: Client, migration_id: str) -> bool:
    return bool(client.hdel(keys.slots(), migration_id))


def slot_holders(client: Client) -> dict[str, dict[str, object]]:
    return {text(k): json.loads(v) for k, v in client.hgetall(keys.slots()).items()}
