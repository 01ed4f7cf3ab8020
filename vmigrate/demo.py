"""``vmigrate demo``: a small mixed-version fleet on a private embedded broker, and six migrations.

Starts an embedded redis-server, four sim hosts (two current, a v2-only one and a v1-only legacy
one) and a dispatcher as real processes; defines and starts VMs; migrates them; prints what
happened; and stops every process it started, whatever happens. The library is imported only
once the environment points at the demo's own broker (``runtime()`` is built from it).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOSTS = {"alpha": "1,2,3", "bravo": "1,2,3", "oldtwo": "2", "legacy": "1"}
LINK_MIBPS = "2048"
VMS = {  # name: (memory MiB, dirty rate MiB/s, injected fault)
    "web1": (1024, 0, None),
    "db1": (2048, 100, None),
    "app1": (512, 0, None),
    "batch1": (512, 0, None),
    "shop1": (1024, 0, "finish"),
}


@dataclass(frozen=True)
class Scenario:
    title: str
    domain: str
    destination: str
    dname: str | None = None
    stale_registry: bool = False


SCENARIOS = (
    Scenario("v3 between current hosts", "web1", "bravo"),
    Scenario("v2: the highest version shared with a v2-only host", "db1", "oldtwo"),
    Scenario("rename refused: a v1 host cannot carry --dname", "app1", "legacy", dname="app1-new"),
    Scenario("v1 to the legacy host", "app1", "legacy"),
    Scenario(
        "stale registry: legacy claims v3, refuses it, fallback",
        "batch1",
        "legacy",
        stale_registry=True,
    ),
    Scenario("fault in Finish: v3 rolls back, source resumes", "shop1", "bravo"),
)


def domain_xml(name: str, memory_mib: int, dirty: int, fault: str | None) -> str:
    fault_xml = f'<sim:fault phase="{fault}"/>' if fault else ""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <metadata>
    <sim:sim xmlns:sim="urn:vmigrate:sim:1" dirty-rate-mibps="{dirty}">{fault_xml}</sim:sim>
  </metadata>
</domain>"""


def _run(scenario: Scenario) -> dict[str, Any]:
    from broker import keys  # noqa: PLC0415
    from tasks.errors import Refused  # noqa: PLC0415
    from tasks.runtime import runtime  # noqa: PLC0415
    from tasks.submission import MigrationRequest, submit  # noqa: PLC0415
    from vmigrate.follow import wait_for  # noqa: PLC0415

    rt = runtime()
    if scenario.stale_registry:  # as if "legacy" registered before a downgrade
        info = json.loads(rt.redis.get(keys.host_info("legacy")) or "{}")
        rt.redis.set(keys.host_info("legacy"), json.dumps({**info, "protocols": [1, 2, 3]}))
    started = time.monotonic()
    request = MigrationRequest(
        scenario.domain, "alpha", scenario.destination, dname=scenario.dname, flags=["live"]
    )
    try:
        record = submit(request)
    except Refused as exc:
        return {"scenario": scenario, "refused": exc}
    final = wait_for(rt, record.id, progress=False)
    return {"scenario": scenario, "record": final, "seconds": time.monotonic() - started}


def _row(result: dict[str, Any]) -> list[Any]:
    s: Scenario = result["scenario"]
    route = f"{s.domain}: alpha -> {s.destination}" + (f" as {s.dname}" if s.dname else "")
    if "refused" in result:
        return [s.title, route, "-", f"refused [{result['refused'].code}]", "-", "-", "alpha"]
    r = result["record"]
    phases = " ".join(
        f"{p.name}{'(c)' if p.cancelled else ''}@v{p.version}{'' if p.outcome == 'ok' else '!'}"
        for p in r.phases
    )
    state = r.state + (f" [{r.error['code']}]" if r.error else "")
    return [s.title, route, f"v{r.protocol}", state, phases, f"{result['seconds']:.2f}", r.vm_host]


def _setup_vms() -> None:
    from tasks.host_commands import call_host  # noqa: PLC0415

    for name, (memory, dirty, fault) in VMS.items():
        call_host("alpha", "define", {"xml": domain_xml(name, memory, dirty, fault)})
        call_host("alpha", "start", {"name": name})


def run_demo(keep: bool = False) -> int:
    from broker.embedded import ensure_embedded, stop_embedded  # noqa: PLC0415

    home = Path(tempfile.mkdtemp(prefix="vmigrate-demo-"))
    url = ensure_embedded(home / "embedded")
    os.environ.update(VMIGRATE_BROKER_URL=url, VMIGRATE_HOME=str(home))
    from tasks.runtime import runtime  # noqa: PLC0415 (after the environment points at the demo)
    from vmigrate.fleet import LocalFleet  # noqa: PLC0415
    from vmigrate.output import table  # noqa: PLC0415

    fleet = LocalFleet({"VMIGRATE_BROKER_URL": url}, home)
    print(f"vmigrate demo: embedded broker at {url}")
    try:
        for name, protocols in HOSTS.items():
            fleet.start_host(name, "--link-mibps", LINK_MIBPS, protocols=protocols)
        fleet.start_dispatcher()
        fleet.wait_ready(runtime().redis, list(HOSTS))
        print("hosts: " + ", ".join(f"{h} (v{p})" for h, p in HOSTS.items()))
        _setup_vms()
        results = [_run(s) for s in SCENARIOS]
        print(
            table(
                ["SCENARIO", "MIGRATION", "PROTOCOL", "RESULT", "PHASES", "SECONDS", "VM NOW ON"],
                [_row(r) for r in results],
            )
        )
        print("phases: name@version, (c) = cancelled (rollback), ! = failed")
        for r in results:
            if "refused" in r:
                print(f"refused: {r['refused'].message}")
            elif r["record"].warnings:
                print(f"{r['scenario'].domain}: " + "; ".join(r["record"].warnings))
        return 0
    finally:
        fleet.stop_all()
        if not keep:
            stop_embedded(home / "embedded")
        print(f"all processes stopped; logs and state in {home}")
