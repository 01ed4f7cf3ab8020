"""Orchestration overhead: vmigrate v3 migrations against the bare Celery floor, same hops.

vmigrate: sequential v3 migrations back and forth between two sim hosts (transfer time zero),
submitted with ``submit`` (what ``vmigrate migrate`` calls), timed from submission to the completed
record. The floor: a Celery chain of six no-op tasks across the same queues (dispatcher, then the
two hosts alternately, as start, Begin, Prepare, Perform, Finish, Confirm), on the same Redis, with
the same worker settings (thread pool, concurrency, late acks, prefetch 1), timed from publishing
to its last task's mark. Both clients block on Redis (XREAD on the events stream; BLPOP on the mark). Then throughput with many in flight.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.bench.common import private_redis, summary, table

SEQUENTIAL = int(os.environ.get("BENCH_SEQUENTIAL", "60"))
PARALLEL = int(os.environ.get("BENCH_PARALLEL", "200"))
HOSTS = ("ba", "bb")
HOPS = ["floor.dispatcher", "ba", "bb", "ba", "bb", "ba"]


def _wait(done, what: str, timeout: float = 60.0, pause: float = 0.0005) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"benchmark stalled waiting for {what}")
        time.sleep(pause)


TERMINAL = {b"completed", b"failed", b"cancelled", b"expired"}


def _wait_event(client, migration_id: str, after: bytes, timeout: float = 60.0) -> bytes:
    """Block on the events stream (as an application would) until the migration ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for _, entries in client.xread({"vmigrate:events": after}, block=1000) or []:
            for entry_id, fields in entries:
                if fields[b"id"] == migration_id.encode() and fields[b"state"] in TERMINAL:
                    return fields[b"state"]
                after = entry_id
    raise TimeoutError(f"benchmark stalled waiting for migration {migration_id}")


def _last_event(client) -> bytes:
    last = client.xrevrange("vmigrate:events", count=1)
    return last[0][0] if last else b"0-0"


def _vmigrate_once(client, submit, request_cls, name: str, src: str, dst: str) -> float:  # noqa: PLR0917
    after = _last_event(client)
    started = time.perf_counter()
    record = submit(request_cls(name, src, dst, flags=["live"]))
    state = _wait_event(client, record.id, after)
    elapsed = time.perf_counter() - started
    if state != b"completed":
        raise RuntimeError(f"benchmark migration {record.id} ended {state.decode()}")
    return elapsed


def _floor_publish(app, run_id: str) -> None:
    """Start a chain of len(HOPS) no-op tasks; each worker publishes the next hop (floor.hop)."""
    queues = [f"floor.{q}" if q in HOSTS else q for q in HOPS]
    app.send_task("floor.hop", args=[run_id, queues[1:]], queue=queues[0])


def _floor_once(app, client) -> float:
    run_id = uuid.uuid4().hex
    started = time.perf_counter()
    _floor_publish(app, run_id)
    if not client.blpop([f"floor:done:{run_id}"], timeout=60):
        raise TimeoutError(f"benchmark stalled waiting for floor chain {run_id}")
    return time.perf_counter() - started


def _start_floor_workers(env: dict[str, str], logs: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for queue in ("floor.dispatcher", "floor.ba", "floor.bb"):
        log = open(logs / f"{queue}.log", "wb")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "tests.bench.floor",
                    "worker",
                    "-Q",
                    queue,
                    "-n",
                    f"{queue}@bench",
                    "-P",
                    "threads",
                    "-c",
                    "4",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "-l",
                    "WARNING",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return procs


def run() -> str:
    home = Path(tempfile.mkdtemp(prefix="vmigrate-bench-"))
    with private_redis(home) as port:
        vm_url, floor_url = f"redis://127.0.0.1:{port}/0", f"redis://127.0.0.1:{port}/1"
        config = home / "bench.toml"
        config.write_text(
            "[limits]\noutbound_per_host = 1000\ninbound_per_host = 1000\nfleet = 1000\n"
        )
        env = {
            **os.environ,
            "VMIGRATE_BROKER_URL": vm_url,
            "VMIGRATE_CONFIG": str(config),
            "VMIGRATE_HOME": str(home),
            "FLOOR_BROKER_URL": floor_url,
        }
        os.environ.update(env)
        import redis

        from tasks.host_commands import call_host
        from tasks.runtime import runtime
        from tasks.submission import MigrationRequest, submit
        from tests.bench import floor
        from tests.helpers import vm_xml
        from vmigrate.fleet import LocalFleet

        fleet = LocalFleet(env, home)
        floor_procs = _start_floor_workers(env, fleet.log_dir)
        try:
            for index, host in enumerate(HOSTS):  # two hosts on one address: separate port ranges
                first = 40000 + index * 2000
                fleet.env.update(
                    VMIGRATE_MIGRATION_PORT_MIN=str(first),
                    VMIGRATE_MIGRATION_PORT_MAX=str(first + 1999),
                )
                fleet.start_host(host, "--time-scale", "1e-9")  # transfers take no time
            fleet.start_dispatcher()
            fleet.wait_ready(runtime().redis, list(HOSTS))
            time.sleep(2)  # the floor workers too
            store, client = runtime().store, redis.Redis.from_url(floor_url)
            events = redis.Redis.from_url(vm_url)
            for name, host in [("seq", "ba")] + [
                (f"par{i}", HOSTS[i % 2]) for i in range(PARALLEL)
            ]:
                call_host(host, "define", {"xml": vm_xml(name, memory_mib=64)})
                call_host(host, "start", {"name": name})
            where = {"seq": "ba"}

            def hop_seq() -> float:
                src = where["seq"]
                dst = "bb" if src == "ba" else "ba"
                where["seq"] = dst
                return _vmigrate_once(events, submit, MigrationRequest, "seq", src, dst)

            for _ in range(5):  # warm-up
                hop_seq()
                _floor_once(floor.app, client)
            ours = [hop_seq() for _ in range(SEQUENTIAL)]
            theirs = [_floor_once(floor.app, client) for _ in range(SEQUENTIAL)]

            our_rate = floor_rate = 0.0
            if PARALLEL:
                our_rate, floor_rate = _throughput(
                    store, submit, MigrationRequest, floor.app, client
                )
        finally:
            fleet.stop_all()
            for proc in floor_procs:
                proc.terminate()
                proc.wait(15)
    return _report(theirs, ours, floor_rate, our_rate)


def _throughput(store, submit, request_cls, app, client) -> tuple[float, float]:
    started = time.perf_counter()
    ids = [
        submit(request_cls(f"par{i}", HOSTS[i % 2], HOSTS[(i + 1) % 2], flags=["live"])).id
        for i in range(PARALLEL)
    ]
    _wait(lambda: all(store.get(i).terminal for i in ids), "parallel migrations", 600, 0.01)
    our_rate = PARALLEL / (time.perf_counter() - started)
    failed = [store.get(i) for i in ids if store.get(i).state != "completed"]
    if failed:
        raise RuntimeError(f"{len(failed)} parallel migrations failed: {failed[0].error}")

    started = time.perf_counter()
    runs = [uuid.uuid4().hex for _ in range(PARALLEL)]
    for run_id in runs:
        _floor_publish(app, run_id)
    _wait(lambda: all(client.llen(f"floor:done:{r}") for r in runs), "floor chains", 600, 0.01)
    floor_rate = PARALLEL / (time.perf_counter() - started)
    return our_rate, floor_rate


def _report(theirs, ours, floor_rate, our_rate):
    a, b = summary(theirs), summary(ours)
    rows = [
        [
            "latency p50 (ms)",
            f"{a['p50'] * 1000:.1f}",
            f"{b['p50'] * 1000:.1f}",
            f"{b['p50'] / a['p50']:.2f}",
            "<= 1.3",
        ],
        [
            "latency p90 (ms)",
            f"{a['p90'] * 1000:.1f}",
            f"{b['p90'] * 1000:.1f}",
            f"{b['p90'] / a['p90']:.2f}",
            "",
        ],
        [
            f"throughput, {PARALLEL} in flight (/s)",
            f"{floor_rate:.1f}",
            f"{our_rate:.1f}",
            f"{our_rate / floor_rate:.2f}" if floor_rate else "not run",
            ">= 0.8",
        ],
    ]
    return (
        "orchestration overhead: vmigrate v3 (6 hops) vs a bare 6-hop Celery chain, "
        f"{SEQUENTIAL} sequential, {PARALLEL} parallel\n"
        + table(rows, ["measure", "floor", "vmigrate", "ratio", "target"])
    )


if __name__ == "__main__":
    print(run())
