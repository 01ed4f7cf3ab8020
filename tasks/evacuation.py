"""Evacuating a host: migrate every running VM off it, under the same limits as any migration.

Destinations are given, or chosen among alive, undrained hosts of the same driver that share a
protocol version with the host and have room, spreading the load. Evacuations run at a high
priority. Draining a host also marks it so that nothing new is placed on it.
"""

from __future__ import annotations

from typing import Any

from broker import keys
from tasks.errors import Refused, VMigrateError
from tasks.placement import Target, place
from tasks.record import now_iso
from tasks.registry import get_host, list_hosts, read_inventory
from tasks.runtime import runtime
from tasks.submission import MigrationRequest, submit

EVACUATION_PRIORITY = 100
LIVE_STATES = ("running", "paused")


def _used_kib(host: str) -> int:
    inventory = read_inventory(runtime().redis, host) or []
    return sum(d["memory_kib"] for d in inventory if d["state"] in LIVE_STATES)


def _targets(host: str, to: list[str] | None) -> list[Target]:
    client = runtime().redis
    names = to or [h.name for h in list_hosts(client) if h.name != host]
    targets = []
    for name in names:
        info = get_host(client, name)
        if info is None:
            raise VMigrateError("HOST_UNKNOWN", f"destination host {name!r} is not registered")
        if not info.alive or (not to and info.drained):
            continue
        free = info.memory_mib * 1024 - _used_kib(name)
        targets.append(Target(name, free, frozenset(info.protocols), driver=info.driver))
    return targets


def set_drained(host: str, drained: bool) -> None:
    client = runtime().redis
    if get_host(client, host) is None:
        raise VMigrateError("HOST_UNKNOWN", f"host {host!r} is not registered")
    if drained:
        client.set(keys.host_drained(host), now_iso())
    else:
        client.delete(keys.host_drained(host))


def evacuate(
    host: str, to: list[str] | None = None, window: str | None = None
) -> list[dict[str, Any]]:
    """Submit one migration per live VM on ``host``; returns what happened to each."""
    info = get_host(runtime().redis, host)
    if info is None:
        raise VMigrateError("HOST_UNKNOWN", f"host {host!r} is not registered")
    if to and host in to:
        raise VMigrateError("SAME_HOST", "a host cannot be evacuated onto itself")
    vms = [
        (d["name"], d["memory_kib"])
        for d in read_inventory(runtime().redis, host) or []
        if d["state"] in LIVE_STATES
    ]
    plan = place(vms, _targets(host, to), frozenset(info.protocols), info.driver)
    items = []
    for name, _ in vms:
        destination = plan[name]
        item: dict[str, Any] = {
            "domain": name,
            "destination": destination,
            "id": None,
            "error": None,
        }
        if destination is None:
            item["error"] = {
                "code": "NO_DESTINATION",
                "message": f"no alive {info.driver} host with room shares a protocol version "
                f"with {host}",
            }
        else:
            request = MigrationRequest(
                name, host, destination, flags=["live"], window=window, priority=EVACUATION_PRIORITY
            )
            try:
                item["id"] = submit(request).id
            except Refused as exc:
                item["error"] = exc.as_dict()
        items.append(item)
    return items
