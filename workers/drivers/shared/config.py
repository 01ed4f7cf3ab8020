"""The configuration every driver has: who the host is, what it offers, where it keeps state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HostConfig:
    host: str
    state_dir: Path
    protocols: frozenset[int] = frozenset({1, 2, 3})
    memory_mib: int = 262144
    vcpus: int = 256
    migration_address: str = "127.0.0.1"
    ports: range = range(49152, 49216)
    host_uuid: str | None = None
    #: Where the domains' host files may live (workers/host_paths.py).
    storage_roots: tuple[str, ...] = ()
