"""A host's state: domains and migration jobs, persisted in the host's state directory.

Written atomically (temporary file, rename) after every change, so a worker that restarts finds
its VMs and its half-done migration jobs where it left them. Every driver keeps its state here; the
file keeps the name the first release gave it, so hosts keep their state across upgrades.
"""

from __future__ import annotations

import json
import os
import threading
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

STATE_FILE = "sim-state.json"  # the name of the first release, read by every later one
KEEP_ENDED = 64  # ended jobs kept for idempotent replies to redelivered phases


class HostState:
    """``domains``: name -> facts; ``outgoing``/``incoming``: migration id -> job facts."""

    def __init__(self, directory: Path, host_uuid: str | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / STATE_FILE
        self.lock = threading.RLock()
        data: dict[str, Any] = {}
        if self.path.exists():
            data = json.loads(self.path.read_text())
        self.host_uuid: str = host_uuid or data.get("host_uuid") or str(uuidlib.uuid4())
        self.domains: dict[str, dict[str, Any]] = data.get("domains", {})
        self.outgoing: dict[str, dict[str, Any]] = data.get("outgoing", {})
        self.incoming: dict[str, dict[str, Any]] = data.get("incoming", {})
        self._saved = b""
        self.save()

    def _prune(self) -> None:
        """Forget ended jobs beyond the latest ``KEEP_ENDED`` (kept for idempotent replies)."""
        for jobs, ended in (
            (self.outgoing, lambda j: j.get("ended")),
            (self.incoming, lambda j: j["status"] in ("finished", "aborted")),
        ):
            finished = [mid for mid, job in jobs.items() if ended(job)]
            for mid in finished[: max(0, len(finished) - KEEP_ENDED)]:
                del jobs[mid]

    def save(self) -> None:
        """Write atomically (rename). No fsync: a simulated host must survive its worker's crash,
        which the page cache covers, not a power failure."""
        self._prune()
        tmp = self.path.with_suffix(".tmp")
        state = {
            "host_uuid": self.host_uuid,
            "domains": self.domains,
            "outgoing": self.outgoing,
            "incoming": self.incoming,
        }
        encoded = orjson.dumps(state)
        if encoded == self._saved:
            return  # a read, or a repeated call that changed nothing
        tmp.write_bytes(encoded)
        os.replace(tmp, self.path)
        self._saved = encoded

    @contextmanager
    def change(self) -> Iterator[HostState]:
        """Hold the lock for a read-modify-write, and persist when the block ends."""
        with self.lock:
            try:
                yield self
            finally:
                self.save()

    def job_holder(self, domain: str) -> str | None:
        """The migration id holding the outgoing job of ``domain``, if any."""
        for mid, job in self.outgoing.items():
            if job["domain"] == domain and not job.get("ended"):
                return mid
        return None

    def incoming_for(self, name: str) -> str | None:
        for mid, job in self.incoming.items():
            if job["name"] == name and job["status"] in ("prepared", "received"):
                return mid
        return None

    def reserved_memory_kib(self) -> int:
        live = sum(d["memory_kib"] for d in self.domains.values() if d["state"] != "shutoff")
        pending = sum(
            j.get("memory_kib", 0)
            for j in self.incoming.values()
            if j["status"] in ("prepared", "received")
        )
        return int(live + pending)
