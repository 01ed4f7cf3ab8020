"""A fleet of many sim hosts: migrations queued for a window that opens, drained under the limits.

For each size (hosts x migrations, ``BENCH_FLEET``, default ``100x1000,1000x1000,1000x10000``):
a private redis-server, ``BENCH_FLEET_PROCS`` worker processes each serving a share of the sim
hosts (``vmigrate worker --host h1 h2 ...``; in production every host runs its own worker), two
dispatchers, every VM defined beforehand, and every migration submitted for the window ``offpeak``
that opens at the next minute boundary after the submissions.

Measured: scheduler ticks on a quiet fleet (all queued with the window closed; the tick that sees
the window open, admits the first and labels the front; ticks with every slot taken), ticks while
the fleet drains (timed by this process among the dispatchers' own, so under the machine's load),
the drain time from the opening to the last migration ended, Redis memory, and the limits
(outbound, inbound, fleet) as checked afterwards from the records' phase times. Ratios compare each
size with the first one, the baseline of the same run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.common import private_redis, table

SIZES = os.environ.get("BENCH_FLEET", "100x1000,1000x1000,1000x10000")
PROCS = int(os.environ.get("BENCH_FLEET_PROCS", "4"))
SUBMIT_SECONDS_EACH = 0.012  # a generous estimate, to place the window's opening after them


def _hosts(count: int) -> list[str]:
    return [f"f{i:04d}" for i in range(count)]


def _define_vms(home: Path, hosts: list[str], migrations: int) -> list[tuple[str, str, str]]:
    """Every VM, defined and started through the sim driver itself before its worker starts.
    Returns (domain, source, destination): each VM goes to the next host."""
    from tests.helpers import vm_xml
    from workers.drivers.sim import SimConfig, SimDriver

    plan: dict[str, list[str]] = {h: [] for h in hosts}
    moves = []
    for i in range(migrations):
        source = hosts[i % len(hosts)]
        destination = hosts[(i + 1) % len(hosts)]
        name = f"vm{i:05d}"
        plan[source].append(name)
        moves.append((name, source, destination))
    for host, names in plan.items():
        driver = SimDriver(SimConfig(host=host, state_dir=home / "hosts" / host, time_scale=1e-9))
        for name in names:
            driver.define(vm_xml(name, memory_mib=64))
            driver.start(name)
    return moves


def _window(opens: dt.datetime) -> str:
    closes = opens + dt.timedelta(hours=6)
    return (
        f'[windows.offpeak]\ntimezone = "UTC"\nranges = ["Mon-Sun {opens:%H:%M}-{closes:%H:%M}"]\n'
    )


def _timed_tick(now: dt.datetime | None = None) -> float:
    from tasks.scheduler import tick

    began = time.perf_counter()
    tick(now)
    return time.perf_counter() - began


def _warm_up() -> None:
    """Make this process tick like a running dispatcher: modules loaded, producer connected."""
    from broker.queues import DISPATCHER
    from tasks import metrics  # noqa: F401
    from tasks.publish import TICK_TASK, send

    send(TICK_TASK, [], DISPATCHER)


def _memory(client) -> int:
    return int(client.info("memory")["used_memory"])


def _one_size(hosts_count: int, count: int) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix="vmigrate-fleet-"))
    with private_redis(home) as port:
        url = f"redis://127.0.0.1:{port}/0"
        setup_began = time.monotonic()
        hosts = _hosts(hosts_count)
        moves = _define_vms(home, hosts, count)
        estimate = len(moves) * SUBMIT_SECONDS_EACH + 20 + PROCS * 5
        opens = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=estimate + 60)).replace(
            second=0, microsecond=0
        )
        config = home / "fleet.toml"
        config.write_text(_window(opens))
        env = {
            "VMIGRATE_BROKER_URL": url,
            "VMIGRATE_CONFIG": str(config),
            "VMIGRATE_HOME": str(home),
        }
        os.environ.update(env)
        return _measure(home, env, hosts, moves, opens, setup_began)


def _measure(home, env, hosts, moves, opens, setup_began) -> dict[str, float]:  # noqa: PLR0917
    from tasks.runtime import runtime
    from tasks.submission import MigrationRequest, submit
    from tests.helpers import max_in_flight
    from vmigrate.fleet import LocalFleet

    rt = runtime()
    fleet = LocalFleet(env, home)
    try:
        share = -(-len(hosts) // PROCS)
        for first in range(0, len(hosts), share):
            fleet.start_hosts(hosts[first : first + share], "--time-scale", "1e-9")
        fleet.wait_ready(rt.redis, hosts, timeout=600)
        memory_idle = _memory(rt.redis)
        began = time.monotonic()
        ids = [
            submit(MigrationRequest(n, s, d, flags=["live"], window="offpeak")).id
            for n, s, d in moves
        ]
        submit_rate = len(ids) / (time.monotonic() - began)
        if dt.datetime.now(dt.UTC) >= opens:
            raise RuntimeError("the submissions outlasted the window's opening: raise the estimate")
        _warm_up()
        closed_ticks = [_timed_tick() for _ in range(5)]
        memory_queued = _memory(rt.redis)
        inside = opens + dt.timedelta(seconds=1)  # the scheduler's view once the window is open
        opening_tick = _timed_tick(inside)  # admits the first, labels the front: quiet fleet
        full_ticks = [_timed_tick(inside) for _ in range(5)]
        fleet.start_dispatcher("dispatcher-1")
        fleet.start_dispatcher("dispatcher-2")
        time.sleep(max(0.0, (opens - dt.datetime.now(dt.UTC)).total_seconds()))
        opened = time.monotonic()
        ticks, peak_memory = [], memory_queued
        while rt.redis.scard("vmigrate:active"):
            time.sleep(rt.settings.scheduler_interval)
            ticks.append(_timed_tick())
            peak_memory = max(peak_memory, _memory(rt.redis))
        drain = time.monotonic() - opened
        records = [rt.store.get(i) for i in ids]
    finally:
        fleet.stop_all()
    failed = [r for r in records if r is None or r.state != "completed"]
    if failed:
        raise RuntimeError(f"{len(failed)} migrations did not complete, e.g. {failed[0]}")
    peak, peak_out, peak_in = max_in_flight(records)
    return {
        "hosts": len(hosts),
        "migrations": len(moves),
        "setup_s": opened - setup_began,
        "submit_per_s": submit_rate,
        "tick_closed_ms": statistics.median(closed_ticks) * 1000,
        "tick_opening_ms": opening_tick * 1000,
        "tick_full_ms": statistics.median(full_ticks) * 1000,
        "tick_drain_p50_ms": statistics.median(ticks) * 1000,
        "tick_drain_max_ms": max(ticks) * 1000,
        "drain_s": drain,
        "per_s": len(moves) / drain,
        "redis_idle_mib": memory_idle / 2**20,
        "redis_queued_mib": memory_queued / 2**20,
        "redis_peak_mib": peak_memory / 2**20,
        "peak_fleet": peak,
        "peak_out": max(peak_out.values()),
        "peak_in": max(peak_in.values()),
        "limits": f"{rt.settings.outbound_per_host}/{rt.settings.inbound_per_host}/{rt.settings.fleet}",
    }


ROWS = [
    ("tick, all queued, window closed (ms)", "tick_closed_ms"),
    ("tick as the window opens: admits, labels (ms)", "tick_opening_ms"),
    ("tick, window open, every slot taken (ms)", "tick_full_ms"),
    ("tick while draining, under load, p50 (ms)", "tick_drain_p50_ms"),
    ("tick while draining, under load, max (ms)", "tick_drain_max_ms"),
    ("drain time from the opening (s)", "drain_s"),
    ("migrations completed per second", "per_s"),
    ("submissions per second", "submit_per_s"),
    ("Redis memory, hosts registered (MiB)", "redis_idle_mib"),
    ("Redis memory, all queued (MiB)", "redis_queued_mib"),
    ("Redis memory, peak while draining (MiB)", "redis_peak_mib"),
]


def _in_own_process(size: str) -> dict[str, float]:
    """Each size runs in a fresh process: its own settings, Redis and caches."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.fleet", size], stdout=subprocess.PIPE, text=True
    )
    try:
        out, _ = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(60)
    if proc.returncode:
        raise RuntimeError(f"fleet benchmark {size} failed ({proc.returncode})")
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def run() -> str:
    results = [_in_own_process(size) for size in SIZES.split(",")]
    base = results[0]
    headers = ["measure"] + [f"{r['hosts']}h x {r['migrations']}m" for r in results]
    headers += [f"ratio vs {headers[1]}" for _ in results[1:]]
    rows = []
    for label, key in ROWS:
        values = [f"{r[key]:.1f}" for r in results]
        ratios = [f"{r[key] / base[key]:.2f}" if base[key] else "-" for r in results[1:]]
        rows.append([label, *values, *ratios])
    limits = [
        f"{r['peak_out']}/{r['peak_in']}/{r['peak_fleet']} (limits {r['limits']})" for r in results
    ]
    rows.append(["peak in flight out/in/fleet, from records", *limits, *["" for _ in results[1:]]])
    title = (
        f"fleet: {PROCS} worker processes serving the sim hosts, 2 dispatchers, default limits; "
        "every migration queued for a window that opens"
    )
    return title + "\n" + table(rows, headers)


if __name__ == "__main__":
    hosts_wanted, migrations_wanted = (int(x) for x in sys.argv[1].split("x"))
    print(json.dumps(_one_size(hosts_wanted, migrations_wanted)))
