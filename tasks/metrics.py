"""Prometheus metrics, every name starting with ``vmigrate_``, served with ``--metrics-port N``.

Counters and histograms count what this process did (a host its phases and bytes, a dispatcher its
admissions). Fleet gauges (migrations by state, queue depths, hosts alive) are read from Redis when
scraped, so any process with a metrics port shows them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    REGISTRY,
    Counter,
    Histogram,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from broker import keys
from tasks.registry import list_hosts
from tasks.runtime import runtime

PHASE_SECONDS = Histogram(
    "vmigrate_phase_duration_seconds",
    "Time a migration phase took on this host",
    ["phase", "protocol", "outcome"],
    buckets=(0.005, 0.02, 0.1, 0.5, 1, 5, 15, 60, 300, 1800),
)
MIGRATIONS = Counter(
    "vmigrate_migrations_finished_total", "Migrations that ended, by state", ["state", "protocol"]
)
BYTES = Counter("vmigrate_bytes_transferred_total", "Bytes sent by migrations off this host")
ADMISSION_WAIT = Histogram(
    "vmigrate_admission_wait_seconds",
    "Time from submission to admission",
    buckets=(0.01, 0.1, 1, 10, 60, 600, 3600, 86400),
)
IGNORED = Counter(
    "vmigrate_phase_messages_ignored_total",
    "Phase messages that changed nothing: stale (not the step in flight), duplicate, wrong host",
    ["reason"],
)
REFUSED = Counter("vmigrate_refused_messages_total", "Messages refused as unauthentic", ["task"])


class FleetCollector(Collector):
    """Gauges computed from Redis on each scrape."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        client = runtime().redis
        states: dict[str, int] = {}
        for record in runtime().store.running():
            states[record.state] = states.get(record.state, 0) + 1
        entries = [json.loads(v) for v in client.hvals(keys.queue())]
        for entry in entries:  # queued and waiting: from their queue entries
            state = entry.get("state", "queued")
            states[state] = states.get(state, 0) + 1
        by_state = GaugeMetricFamily(
            "vmigrate_migrations", "Migrations not yet ended, by state", labels=["state"]
        )
        for state, count in sorted(states.items()):
            by_state.add_metric([state], count)
        yield by_state
        queue = GaugeMetricFamily(
            "vmigrate_queue_depth", "Queued migrations, by queue state", labels=["state"]
        )
        for state in ("queued", "waiting"):
            queue.add_metric([state], sum(e.get("state") == state for e in entries))
        yield queue
        yield GaugeMetricFamily(
            "vmigrate_slots_in_use",
            "Admitted migrations holding a slot",
            value=client.hlen(keys.slots()),
        )
        hosts = list_hosts(client)
        yield GaugeMetricFamily(
            "vmigrate_hosts_alive",
            "Registered hosts with a recent heartbeat",
            value=sum(h.alive for h in hosts),
        )
        yield GaugeMetricFamily("vmigrate_hosts_registered", "Registered hosts", value=len(hosts))


_serving: dict[str, Any] = {}


def serve(port: int) -> None:
    """Serve ``/metrics`` on ``port`` (once per process)."""
    if "server" in _serving:
        return
    for default in (GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR):  # only vmigrate_ names
        REGISTRY.unregister(default)
    REGISTRY.register(FleetCollector())
    _serving["server"] = start_http_server(port)


def phase_done(phase: str, protocol: int | None, ok: bool, seconds: float) -> None:
    PHASE_SECONDS.labels(phase, str(protocol or ""), "ok" if ok else "failed").observe(seconds)
