"""What integration tests do as a user would: define VMs, migrate, and look at every host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from broker import keys
from tasks.host_commands import call_host
from tasks.record import MigrationRecord
from tasks.registry import list_hosts, read_inventory
from tasks.runtime import runtime
from tasks.submission import MigrationRequest, submit
from tests.redis_server import PortLost, on_free_port

#: The states a v3 migration that nothing delayed goes through, as the events stream shows them.
V3_STATES = ["pending", "begin", "prepare", "perform", "finish", "confirm", "completed"]


def vm_xml(
    name: str,
    memory_mib: int = 256,
    faults: tuple[str, ...] = (),
    dirty: int = 0,
    bugs: tuple[str, ...] = (),
) -> str:
    """A sim guest; ``faults``: phases it fails with an error, ``bugs``: with an exception."""
    fault_xml = "".join(f'<sim:fault phase="{p}"/>' for p in faults)
    fault_xml += "".join(f'<sim:fault phase="{p}" kind="bug"/>' for p in bugs)
    return (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>{memory_mib}</memory>"
        f"<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>"
        f"<metadata><sim:sim xmlns:sim='urn:vmigrate:sim:1' dirty-rate-mibps='{dirty}'>"
        f"{fault_xml}</sim:sim></metadata></domain>"
    )


def unique(prefix: str = "vm") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@contextmanager
def stale_registration(host: str, protocols: list[int]) -> Iterator[None]:
    """``host``'s registration claims ``protocols``, as if it was downgraded since it registered."""
    client = runtime().redis
    original = client.get(keys.host_info(host))
    client.set(keys.host_info(host), json.dumps({**json.loads(original), "protocols": protocols}))
    try:
        yield
    finally:
        client.set(keys.host_info(host), original)


def running_vm(host: str, name: str | None = None, **xml: Any) -> dict[str, Any]:
    """Define and start a VM on ``host``; returns its facts (name, uuid...)."""
    name = name or unique()
    call_host(host, "define", {"xml": vm_xml(name, **xml)})
    info: dict[str, Any] = call_host(host, "start", {"name": name})
    return info


T = TypeVar("T")


def wait_until(check: Callable[[], T], what: str, timeout: float = 30.0, every: float = 0.02) -> T:
    """Poll ``check`` until it returns something true, and return that; fail saying ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout} s: {what}")
        time.sleep(every)


def finished_tasks(node: str, task: str) -> int:
    """How many ``task`` tasks the worker ``node`` has run to their end (Celery's own counters:
    accepted, less those still running)."""
    inspect = runtime().app.control.inspect(destination=[node], timeout=5)
    total = (inspect.stats() or {})[node]["total"].get(task, 0)
    running = [t for t in (inspect.active() or {})[node] if t["name"] == task]
    return int(total) - len(running)


def scheduler_rounds_pass(rounds: int = 2, timeout: float = 30.0) -> None:
    """Wait until the dispatchers' scheduler has run ``rounds`` more rounds (each round ticks,
    then takes the sweep lock anew)."""
    client = runtime().redis
    for _ in range(rounds):
        client.delete(keys.sweep_lock())
        wait_until(lambda: client.exists(keys.sweep_lock()), "a scheduler round", timeout)


def wait_terminal(migration_id: str, timeout: float = 60.0, store: Any = None) -> MigrationRecord:
    """The record once it ended; ``store``: another broker's (default: the session's)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = (store or runtime().store).get(migration_id)
        if record is not None and record.terminal:
            return record
        time.sleep(0.05)
    raise AssertionError(f"migration {migration_id} did not end within {timeout} s: {record}")


def migrate(domain: str, source: str, destination: str, **options: Any) -> MigrationRecord:
    record = submit(MigrationRequest(domain, source, destination, **options))
    return wait_terminal(record.id)


def live_copies(vm_uuid: str) -> list[tuple[str, str, str]]:
    """(host, name, state) of every running or paused copy of ``vm_uuid`` in the fleet."""
    found = []
    for host in list_hosts(runtime().redis):
        for dom in read_inventory(runtime().redis, host.name) or []:
            if dom["uuid"] == vm_uuid and dom["state"] in ("running", "paused"):
                found.append((host.name, dom["name"], dom["state"]))
    return found


def domain_on(host: str, name: str) -> dict[str, Any] | None:
    inventory = read_inventory(runtime().redis, host) or []
    return next((d for d in inventory if d["name"] == name), None)


def max_in_flight(records) -> tuple[int, dict[str, int], dict[str, int]]:
    """Sweep the records' [first phase start, end) intervals: most at once, fleet and per host."""
    events = []
    for r in records:
        start = min(p.started for p in r.phases)
        end = max(p.ended for p in r.phases)
        events += [(start, 1, r), (end, -1, r)]
    fleet, peak, out, inn, peak_out, peak_in = 0, 0, {}, {}, {}, {}
    for _, delta, r in sorted(events, key=lambda e: (e[0], e[1])):
        fleet += delta
        out[r.source] = out.get(r.source, 0) + delta
        inn[r.destination] = inn.get(r.destination, 0) + delta
        peak = max(peak, fleet)
        peak_out[r.source] = max(peak_out.get(r.source, 0), out[r.source])
        peak_in[r.destination] = max(peak_in.get(r.destination, 0), inn[r.destination])
    return peak, peak_out, peak_in


def cli(
    env: dict[str, str], home: Path, *args: str, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """``vmigrate *args`` as a user runs it, against the broker and home of ``env``."""
    full = {**os.environ, **env, "VMIGRATE_HOME": str(home)}
    if "VMIGRATE_CONFIG" not in env:
        full.pop("VMIGRATE_CONFIG", None)  # not the test session's configuration
    return subprocess.run(
        [sys.executable, "-m", "vmigrate.cli", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def migrate_on_own_broker(env: dict[str, str], home: Path, client: Any, prefix: str) -> None:
    """Two hosts and a dispatcher on the broker of ``env``: define a VM on the first and migrate
    it live to the second through the CLI; every process is stopped, also on failure."""
    from vmigrate.fleet import LocalFleet

    source, destination, name = f"{prefix}-a", f"{prefix}-b", f"{prefix}vm"
    fleet = LocalFleet(env, home)
    try:
        fleet.start_host(source)
        fleet.start_host(destination)
        fleet.start_dispatcher()
        fleet.wait_ready(client, [source, destination])
        xml = home / "vm.xml"
        xml.write_text(vm_xml(name))
        defined = cli(env, home, "define", source, str(xml), "--start")
        assert defined.returncode == 0, defined.stderr
        done = cli(
            env, home, "migrate", name, "--from", source, "--to", destination, "--live", "--wait"
        )
        assert done.returncode == 0, done.stderr
    finally:
        fleet.stop_all()


def serving(
    proc: Any, answers: Callable[[], Any], log: Path, what: str, timeout: float = 30.0
) -> Any:
    """Wait until ``proc`` serves (``answers()``); ``PortLost`` if it exited because its port was
    taken meanwhile (the caller tries another), an error saying why for any other exit."""
    wait_until(lambda: proc.poll() is not None or answers(), f"{what} serving", timeout, 0.1)
    if proc.poll() is not None:
        said = log.read_text(errors="replace")
        if "address already in use" in said.lower():
            raise PortLost(said)
        raise AssertionError(f"{what} exited: {said}")
    return proc


def start_with_metrics(local: Any, name: str, spawn: Callable[[int], Any]) -> int:
    """Start ``name`` with a free port for its metrics; again on another one if it lost it."""
    log = local.log_dir / f"{name}.log"
    port, _ = on_free_port(lambda port: serving(spawn(port), lambda: metrics_text(port), log, name))
    return port


def metrics_text(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            return answer.read().decode()
    except OSError:
        return ""
