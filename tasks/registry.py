"""The host registry: who is in the fleet, what each host speaks, and what it runs.

A host writes its registration when its worker starts and refreshes an expiring ``alive`` key on
every heartbeat; when heartbeats stop the key expires and the host shows as dead. The registration
itself stays, so an operator still sees a dead host, and it can be stale (a host downgraded since):
phases therefore re-check the version on the host itself.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

from broker import keys
from broker.connection import Client, text
from tasks.compat import known_fields
from tasks.record import now_iso


def _installed_version() -> str:
    """The version pyproject.toml declares, as installed (the one declaration of it)."""
    try:
        return metadata.version("vmigrate")
    except metadata.PackageNotFoundError:  # a checkout run without installing
        return "0+unknown"


SOFTWARE_VERSION = _installed_version()


@dataclass
class HostInfo:
    name: str
    protocols: list[int]
    driver: str
    memory_mib: int
    vcpus: int
    host_uuid: str
    version: str = SOFTWARE_VERSION
    registered: str = field(default_factory=now_iso)
    alive: bool = False
    drained: bool = False
    #: How peers reach the host (``keys.host_endpoint``): migration address, port range, and the
    #: URI of its hypervisor daemon where it has one.
    endpoint: dict[str, Any] = field(default_factory=dict)
    #: The driver copies local disks (storage migration); a registration written before 0.4
    #: has no such field and reads as False, so such a host is never asked to.
    copy_storage: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, found: str | bytes, **known: Any) -> HostInfo:
        """A registration as stored; fields a newer release added are ignored, missing ones
        take their defaults."""
        return cls(**{**known_fields(cls, json.loads(found)), **known})


def register(client: Client, info: HostInfo, ttl: float, alive: bool = True) -> None:
    """Write the host's registration; ``alive`` also marks it alive now (a worker marks itself
    alive only once its consumer listens, with its first heartbeat)."""
    data = {k: v for k, v in info.as_dict().items() if k not in ("alive", "drained", "endpoint")}
    with client.pipeline() as pipe:
        pipe.set(keys.host_info(info.name), json.dumps(data))
        pipe.set(keys.host_endpoint(info.name), json.dumps(info.endpoint))
        pipe.sadd(keys.hosts(), info.name)
        if alive:
            pipe.set(keys.host_alive(info.name), now_iso(), px=int(ttl * 1000))
        pipe.set(keys.host_last_seen(info.name), str(time.time()))
        pipe.execute()


def heartbeat(client: Client, hosts: list[str], ttl: float) -> None:
    """Refresh the ``alive`` key of every host this process serves, in one round trip."""
    with client.pipeline(transaction=False) as pipe:
        for host in hosts:
            pipe.set(keys.host_alive(host), now_iso(), px=int(ttl * 1000))
            pipe.set(keys.host_last_seen(host), str(time.time()))
        pipe.execute()


def down_for(client: Client, host: str) -> float:
    """Seconds since the host's last heartbeat (0 while it is alive)."""
    if client.exists(keys.host_alive(host)):
        return 0.0
    seen = client.get(keys.host_last_seen(host))
    return time.time() - float(seen) if seen else float("inf")


def unregister_alive(client: Client, host: str) -> None:
    client.delete(keys.host_alive(host))


def get_host(client: Client, name: str) -> HostInfo | None:
    return get_hosts(client, [name])[0]


def get_hosts(client: Client, names: list[str]) -> list[HostInfo | None]:
    """The registrations of ``names``, in order, read in one round trip."""
    return read_hosts(client, names)[0]


def read_hosts(
    client: Client, names: list[str], inventory_of: str | None = None
) -> tuple[list[HostInfo | None], list[dict[str, Any]] | None]:
    """Registrations of ``names`` and, if asked, one host's inventory, in one round trip."""
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.get(keys.host_info(name))
            pipe.exists(keys.host_alive(name))
            pipe.exists(keys.host_drained(name))
            pipe.get(keys.host_endpoint(name))
        if inventory_of is not None:
            pipe.get(keys.host_domains(inventory_of))
        replies = pipe.execute()
    hosts: list[HostInfo | None] = []
    for index in range(len(names)):
        found, alive, drained, endpoint = replies[4 * index : 4 * index + 4]
        hosts.append(
            HostInfo.from_json(
                found,
                alive=bool(alive),
                drained=bool(drained),
                endpoint=json.loads(endpoint) if endpoint else {},
            )
            if found
            else None
        )
    inventory = _inventory(replies[-1]) if inventory_of is not None else None
    return hosts, inventory


def list_hosts(client: Client) -> list[HostInfo]:
    names = sorted(text(n) for n in client.smembers(keys.hosts()))
    return [h for h in get_hosts(client, names) if h is not None]


def publish_inventory(client: Client, host: str, domains: list[dict[str, Any]]) -> None:
    client.set(keys.host_domains(host), json.dumps({"updated": now_iso(), "domains": domains}))


def read_inventory(client: Client, host: str) -> list[dict[str, Any]] | None:
    return _inventory(client.get(keys.host_domains(host)))


def _inventory(found: Any) -> list[dict[str, Any]] | None:
    if not found:
        return None
    domains: list[dict[str, Any]] = json.loads(found)["domains"]
    return domains
