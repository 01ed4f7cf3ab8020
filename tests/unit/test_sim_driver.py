"""The sim driver is real code with its own tests: domains, capacity, jobs, streams, faults, restart."""

from __future__ import annotations

import itertools
import random
import time
from pathlib import Path

import pytest

from workers.cookie import Cookie
from workers.drivers.base import DriverError, JobBusy, MigrationJob, NoCapacity
from workers.drivers.sim import SimConfig, SimDriver
from workers.drivers.sim.precopy import MIB, plan_precopy, progress_at

# Each run (two may run at once) starts its drivers' port ranges at a place of its own; within a
# range a driver skips ports another process holds.
_ports = itertools.count(random.randrange(28000, 32000, 20), 20)


def xml(name: str = "vm", memory: int = 256, dirty: int = 0, faults: tuple[str, ...] = ()) -> str:
    f = "".join(f"<s:fault phase='{p}'/>" for p in faults)
    return (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>{memory}</memory>"
        f"<metadata><s:sim xmlns:s='urn:vmigrate:sim:1' dirty-rate-mibps='{dirty}'>{f}</s:sim>"
        "</metadata></domain>"
    )


def driver(tmp: Path, host: str, **kw) -> SimDriver:
    start = next(_ports)
    return SimDriver(SimConfig(host, tmp / host, ports=range(start, start + 20), **kw))


def migrate(src: SimDriver, dst: SimDriver, version: int, name: str = "vm", mid: str = "m1", **kw):
    job = MigrationJob(
        mid, version, name, src.config.host, dst.config.host, flags=frozenset({"live"}), **kw
    )
    cookie = dom_xml = None
    if version == 3:
        begun = src.begin(job, None)
        cookie, dom_xml = begun.cookie, begun.xml
    elif version == 2:
        dom_xml = src.domain_xml(name)
    prepared = dst.prepare(job, cookie, dom_xml)
    src.perform(job, prepared.cookie, prepared.uri)
    while not (status := src.perform_status(job)).done:
        time.sleep(0.01)
    if status.error:
        raise status.error
    out = dst.finish(job, status.cookie if version == 3 else prepared.cookie, cancelled=False)
    if version == 3:
        src.confirm(job, out, cancelled=False)
    return job


def states(d: SimDriver) -> dict[str, str]:
    return {x.name: x.state for x in d.list_domains()}


@pytest.mark.parametrize("version", [1, 2, 3])
def test_each_version_moves_a_running_domain(tmp_path, version):
    a, b = driver(tmp_path, "a"), driver(tmp_path, "b")
    a.define(xml())
    a.start("vm")
    migrate(a, b, version)
    assert states(a) == {"vm": "shutoff"}  # the persistent definition stays, shut off
    assert states(b) == {"vm": "running"}


def test_rename_and_persist(tmp_path):
    a, b = driver(tmp_path, "a"), driver(tmp_path, "b")
    a.define(xml())
    a.start("vm")
    migrate(a, b, 3, dname="vm2")
    assert states(b) == {"vm2": "running"}
    assert "<name>vm2</name>" in b.domain_xml("vm2")


def test_domains_survive_a_restart(tmp_path):
    a = driver(tmp_path, "a")
    a.define(xml())
    a.start("vm")
    again = SimDriver(SimConfig("a", tmp_path / "a"))
    assert states(again) == {"vm": "running"} and again.host_uuid == a.host_uuid


def test_capacity_is_accounted(tmp_path):
    a = driver(tmp_path, "a", memory_mib=512)
    a.define(xml("one", 256))
    a.define(xml("two", 512))
    a.start("one")
    with pytest.raises(NoCapacity):
        a.start("two")


def test_conflicting_definitions_are_refused(tmp_path):
    a = driver(tmp_path, "a")
    first = a.define(xml())
    with pytest.raises(DriverError, match="already exists with uuid"):
        a.define(
            xml().replace(
                "<name>vm</name>",
                f"<name>vm</name><uuid>{'1' * 8}-1111-1111-1111-{'1' * 12}</uuid>",
            )
        )
    assert (
        a.define(xml().replace("<name>vm</name>", f"<name>vm</name><uuid>{first.uuid}</uuid>")).uuid
        == first.uuid
    )


def test_one_migration_job_per_domain(tmp_path):
    a, _b = driver(tmp_path, "a"), driver(tmp_path, "b")
    a.define(xml())
    a.start("vm")
    a.begin(MigrationJob("m1", 3, "vm", "a", "b"), None)
    with pytest.raises(JobBusy, match="another migration job is already running"):
        a.begin(MigrationJob("m2", 3, "vm", "a", "b"), None)


def test_phases_are_idempotent_per_migration(tmp_path):
    a, b = driver(tmp_path, "a"), driver(tmp_path, "b")
    a.define(xml())
    a.start("vm")
    job = MigrationJob("m1", 3, "vm", "a", "b", flags=frozenset({"live"}))
    begun = a.begin(job, None)
    assert a.begin(job, None) == begun
    prepared = b.prepare(job, begun.cookie, begun.xml)
    assert b.prepare(job, begun.cookie, begun.xml) == prepared
    a.perform(job, prepared.cookie, prepared.uri)
    a.perform(job, prepared.cookie, prepared.uri)
    while not (status := a.perform_status(job)).done:
        time.sleep(0.01)
    cookie = b.finish(job, status.cookie, False)
    assert b.finish(job, status.cookie, False) == cookie
    a.confirm(job, cookie, False)
    a.confirm(job, cookie, False)
    assert states(b) == {"vm": "running"} and states(a) == {"vm": "shutoff"}


def test_prepare_refuses_a_cookie_for_another_domain(tmp_path):
    a, b = driver(tmp_path, "a"), driver(tmp_path, "b")
    a.define(xml())
    a.start("vm")
    job = MigrationJob("m1", 3, "vm", "a", "b")
    begun = a.begin(job, None)
    forged = Cookie("vm", "0b6a8c2e-3d4f-4e5a-8b6c-7d8e9f0a1b2c", "a", a.host_uuid).to_xml()
    with pytest.raises(DriverError, match="unexpected UUID") as refused:
        b.prepare(job, forged, begun.xml)
    assert refused.value.code == "COOKIE_REJECTED"


def test_faults_and_rollback_of_perform(tmp_path):
    a, b = driver(tmp_path, "a"), driver(tmp_path, "b")
    a.define(xml(faults=("perform",)))
    a.start("vm")
    with pytest.raises(DriverError, match="fault injected in perform"):
        migrate(a, b, 2)
    b.finish(MigrationJob("m1", 2, "vm", "a", "b"), None, cancelled=True)
    assert states(a) == {"vm": "running"} and states(b) == {}


def test_a_host_told_to_fail_v1_prepare_fails_it_and_can_be_told_otherwise(tmp_path):
    from workers.drivers.sim.base import fault_phases

    a, b = driver(tmp_path, "a"), driver(tmp_path, "b", faults=fault_phases("prepare"))
    a.define(xml())
    a.start("vm")
    with pytest.raises(DriverError, match="fault injected in prepare by host b's --fail-phase"):
        migrate(a, b, 1)  # v1: Prepare sees no XML, only the host can fail it
    assert states(a) == {"vm": "running"} and states(b) == {}
    assert b.set_faults([]) == []
    migrate(a, b, 1, mid="m2")
    assert states(b) == {"vm": "running"}
    with pytest.raises(ValueError, match="not 'boot'"):
        fault_phases("prepare,boot")


def test_non_convergence_fails_and_resumes_the_source(tmp_path):
    a, b = driver(tmp_path, "a", link_mibps=1000, time_scale=0.001), driver(tmp_path, "b")
    a.define(xml(memory=1024, dirty=2000))
    a.start("vm")
    with pytest.raises(DriverError) as failed:
        migrate(a, b, 3)
    assert failed.value.code == "NOT_CONVERGED"
    assert states(a) == {"vm": "running"}


def test_precopy_model():
    quiet = plan_precopy(1024 * MIB, 0, 100 * MIB)
    assert quiet.converges and quiet.iterations == 1 and quiet.duration == pytest.approx(10.24)
    busy = plan_precopy(1024 * MIB, 50 * MIB, 100 * MIB)
    assert busy.converges and busy.iterations > 1 and busy.transferred > 1024 * MIB
    assert busy.downtime <= 0.3
    assert not plan_precopy(1024 * MIB, 120 * MIB, 100 * MIB).converges
    sent = [
        progress_at(busy, t, 1024 * MIB, 50 * MIB)["memory_processed"] for t in (0.5, 5, 10, 15)
    ]
    assert sent == sorted(sent) and sent[0] > 0


def test_a_busy_host_reuses_its_ports(tmp_path):
    """More migrations than ports within a minute: ports in TIME_WAIT are listened on again."""
    a = driver(tmp_path, "a")
    start = next(_ports)
    b = SimDriver(SimConfig("b", tmp_path / "b", ports=range(start, start + 2)))  # two ports only
    a.define(xml())
    a.start("vm")
    for i in range(6):
        src, dst = (a, b) if i % 2 == 0 else (b, a)
        migrate(src, dst, 3, mid=f"m{i}")
    assert states(a)["vm"] == "running"


def test_two_hosts_migrating_to_each_other_at_once_do_not_wait_on_each_other(tmp_path):
    """Each Perform sends its stream while the other host's listener needs that host's state."""
    import threading

    a, b = driver(tmp_path, "a"), driver(tmp_path, "b")
    for host, name in ((a, "left"), (b, "right")):
        host.define(xml(name))
        host.start(name)
    jobs = {
        "left": MigrationJob("m-left", 3, "left", "a", "b", flags=frozenset({"live"})),
        "right": MigrationJob("m-right", 3, "right", "b", "a", flags=frozenset({"live"})),
    }
    prepared = {}
    for name, (src, dst) in (("left", (a, b)), ("right", (b, a))):
        begun = src.begin(jobs[name], None)
        prepared[name] = dst.prepare(jobs[name], begun.cookie, begun.xml)
    errors = []
    together = threading.Barrier(2)

    def perform(src, name):
        together.wait(10)  # both performs begin at the same moment
        try:
            src.perform(jobs[name], prepared[name].cookie, prepared[name].uri)
        except DriverError as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=perform, args=(a, "left")),
        threading.Thread(target=perform, args=(b, "right")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a crossing Perform never returned (deadlock)"
    assert not errors


def test_a_begin_refused_for_its_destination_xml_leaves_the_domain_free(tmp_path):
    a = driver(tmp_path, "a")
    a.define(xml(memory=256))
    a.start("vm")
    first = MigrationJob("m-abi", 3, "vm", "a", "b", flags=frozenset({"live"}))
    with pytest.raises(DriverError) as refused:
        a.begin(first, xml(memory=512))  # another memory size: not the same guest ABI
    assert refused.value.code == "DEST_XML_ABI_MISMATCH"
    assert a.migration_jobs() == {}
    again = MigrationJob("m-next", 3, "vm", "a", "b", flags=frozenset({"live"}))
    assert a.begin(again, None).state == "running"  # not refused as busy
