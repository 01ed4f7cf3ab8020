"""The libvirt driver on two real libvirt daemons acting as two hosts (vmigrate/libvirt_bed.py).

Each daemon has its own mount and UTS namespaces, hostname, host UUID, loopback address and port
range, under a child subreaper; a vmigrate worker beside each drives it by URI, and the session's
dispatchers and Redis carry the migration. Guests are defined with ``virsh`` directly on a daemon,
not through vmigrate, as on a fleet vmigrate did not build. The guest is the QEMU tests' busy
Linux guest (domain type ``qemu``, TCG); its console file is the same path on both daemons and a
different file on each, so each host's console shows what ran there.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.runtime import runtime
from tasks.submission import MigrationRequest, submit
from tests.conftest import FAST_RECOVERY, HOME, PORT_BASE, REDIS_URL
from tests.environment import missing_dependency, require_command
from tests.helpers import cli, unique, wait_terminal, wait_until
from vmigrate import libvirt_bed
from vmigrate.fleet import LocalFleet
from vmigrate.guest import build_initramfs, find_kernel

HEARTBEAT = re.compile(r"HB (\S+) (\d+)")
#: Small enough that a guest which cannot converge is aborted within the test's patience.
TIMEOUT_PER_GIB = "25"
ENV = {
    "VMIGRATE_BROKER_URL": REDIS_URL,
    **FAST_RECOVERY,
    "VMIGRATE_COMPLETION_TIMEOUT_PER_GIB": TIMEOUT_PER_GIB,
}
HOSTS = ("la", "lb")


def require_libvirt() -> None:
    problem = libvirt_bed.missing()
    if problem is None:
        return
    missing_dependency(f"{problem}: {libvirt_bed.INSTALL}")


class Bed:
    """The daemons, the workers beside them, and the guest's kernel and initramfs."""

    def __init__(self, daemons: libvirt_bed.Bed, fleet: LocalFleet, kernel: Path, initrd: Path):
        self.daemons = {d.name: d for d in daemons.daemons}
        self.fleet = fleet
        self.kernel = kernel
        self.initrd = initrd

    def start_worker(self, host: str) -> None:
        args, env = self.daemons[host].worker_options()
        self.fleet.start_host(host, *args, protocols="3", env=env)

    def console(self, host: str, name: str) -> list[tuple[str, int]]:
        path = self.daemons[host].console_file(name)
        text = path.read_text(errors="replace") if path.exists() else ""
        return [(b, int(n)) for b, n in HEARTBEAT.findall(text)]

    def boot(
        self, host: str, fill: int = 32, dirty: int = 0, memory: int = 256, name: str = ""
    ) -> str:
        """A guest defined and started with virsh on ``host``'s daemon, printing heartbeats."""
        name = name or unique("lv")
        xml = libvirt_bed.guest_definition(
            name, self.kernel, self.initrd, memory_mib=memory, fill_mib=fill, dirty_mib=dirty
        )
        path = HOME / f"{name}-{host}.xml"
        path.write_text(xml)
        daemon = self.daemons[host]
        daemon.virsh("define", str(path))
        daemon.virsh("start", name)
        wait_until(lambda: len(self.console(host, name)) >= 3, f"{name} booted", 90, every=0.3)
        wait_until(lambda: _listed(self, host, name), f"{name} in {host}'s inventory", 20)
        return name

    def states(self, name: str) -> dict[str, str]:
        """``virsh list --all`` on each daemon: the domain's state there, or absent."""
        found = {}
        for host, daemon in self.daemons.items():
            rows = [line.split() for line in daemon.virsh("list", "--all").splitlines()[2:]]
            found[host] = next((" ".join(r[2:]) for r in rows if len(r) > 2 and r[1] == name), "")
        return found

    def running_on(self, name: str) -> list[str]:
        return [h for h, state in self.states(name).items() if state == "running"]


def _listed(bed: Bed, host: str, name: str) -> bool:
    from tasks.registry import read_inventory

    return any(d["name"] == name for d in read_inventory(runtime().redis, host) or [])


@pytest.fixture(scope="module")
def bed(fleet: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    require_libvirt()
    root = tmp_path_factory.mktemp("libvirt-bed")
    initrd = build_initramfs(root / "initrd.cpio")
    daemons = libvirt_bed.make_bed(root, list(HOSTS), first_port=PORT_BASE + 100, per_host=50)
    local = LocalFleet(ENV, HOME, log_dir=HOME / "logs")
    try:
        daemons.start()
        made = Bed(daemons, local, find_kernel(), initrd)
        for host in HOSTS:
            made.start_worker(host)
        local.wait_ready(runtime().redis, list(HOSTS))
        yield made
    finally:
        local.stop_all()
        daemons.stop()


def migrate_cli(*args: str, timeout: float = 180) -> tuple[int, dict[str, Any]]:
    """``vmigrate migrate ... --wait --json``: the exit status and the final record."""
    done = cli(ENV, HOME, "migrate", *args, "--wait", "--json", timeout=timeout)
    assert done.stdout.startswith("{"), (
        f"no JSON from vmigrate migrate: {done.stdout} {done.stderr}"
    )
    return done.returncode, json.loads(done.stdout)


def counting_on(bed: Bed, host: str, name: str, after: int = 0) -> list[tuple[str, int]]:
    """The guest's heartbeats on ``host`` go on past ``after``: it runs there."""
    return wait_until(
        lambda: [hb for hb in bed.console(host, name) if hb[1] > after + 2],
        f"{name} counting on {host}",
        30,
    )


def copying(migration_id: str) -> bool:
    """Perform has sent some memory."""
    record = runtime().store.get(migration_id)
    return record is not None and record.progress.get("memory_processed", 0) > 0


def start_copying(name: str, bandwidth: int) -> str:
    """``vmigrate migrate NAME --from la --to lb --live --bandwidth N``, returned once Perform
    has sent some memory; the migration's id."""
    done = cli(
        ENV,
        HOME,
        "migrate",
        name,
        "--from",
        "la",
        "--to",
        "lb",
        "--live",
        "--bandwidth",
        str(bandwidth),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    migration_id = done.stdout.split()[-1]
    wait_until(lambda: copying(migration_id), "Perform copying", 30)
    return migration_id


def test_a_domain_defined_with_virsh_migrates_live_to_the_other_daemon(bed: Bed) -> None:
    name = bed.boot("la")
    code, record = migrate_cli(name, "--from", "la", "--to", "lb", "--live")
    assert code == 0 and record["state"] == "completed", (record["error"], record["warnings"])
    assert record["protocol"] == 3
    last_on_a = bed.console("la", name)[-1]
    on_b = counting_on(bed, "lb", name, after=last_on_a[1])
    assert {boot for boot, _ in on_b} == {last_on_a[0]}, "the same boot goes on, not a reboot"
    assert bed.running_on(name) == ["lb"]
    assert bed.states(name)["la"] == "shut off", "persistent source: kept defined, shut off"
    assert record["progress"]["transferred"] > 16 * 2**20, record["progress"]


def test_the_host_registers_libvirts_facts_and_lists_the_domains_virsh_made(bed: Bed) -> None:
    name = bed.boot("la", fill=16)
    hosts = json.loads(cli(ENV, HOME, "hosts", "--json").stdout)
    la = next(h for h in hosts if h["name"] == "la")
    daemon = bed.daemons["la"]
    assert la["driver"] == "libvirt" and la["protocols"] == [3] and la["alive"]
    assert la["host_uuid"] == daemon.host_uuid, "libvirt's host UUID, from its capabilities"
    assert la["endpoint"] == {
        "daemon_uri": daemon.uri,
        "migration_address": daemon.address,
        "migration_ports": [daemon.ports.start, daemon.ports.stop - 1],
    }
    domains = json.loads(cli(ENV, HOME, "domains", "la", "--json").stdout)
    assert {"name": name, "state": "running"}.items() <= next(
        d for d in domains if d["name"] == name
    ).items()


def test_paused_leaves_the_guest_paused_on_the_destination(bed: Bed) -> None:
    name = bed.boot("la", fill=16)
    code, record = migrate_cli(name, "--from", "la", "--to", "lb", "--live", "--paused")
    assert code == 0 and record["state"] == "completed", (record["error"], record["warnings"])
    assert bed.states(name) == {"la": "shut off", "lb": "paused"}
    bed.daemons["lb"].virsh("resume", name)
    counting_on(bed, "lb", name)


def test_offline_moves_the_definition_of_a_shut_off_domain(bed: Bed) -> None:
    name = unique("off")
    path = HOME / f"{name}.xml"
    path.write_text(libvirt_bed.guest_definition(name, bed.kernel, bed.initrd))
    bed.daemons["la"].virsh("define", str(path))
    wait_until(lambda: _listed(bed, "la", name), f"{name} in la's inventory", 20)
    code, record = migrate_cli(name, "--from", "la", "--to", "lb", "--offline", "--persist")
    assert code == 0 and record["state"] == "completed", (record["error"], record["warnings"])
    assert bed.states(name) == {"la": "shut off", "lb": "shut off"}
    assert re.search(r"Persistent:\s+yes", bed.daemons["lb"].virsh("dominfo", name))


def test_dname_persist_and_undefine_source_as_virsh_shows_them(bed: Bed) -> None:
    name = bed.boot("la")
    new = unique("renamed")
    code, record = migrate_cli(
        name,
        "--from",
        "la",
        "--to",
        "lb",
        "--live",
        "--dname",
        new,
        "--persist",
        "--undefine-source",
    )
    assert code == 0 and record["state"] == "completed", (record["error"], record["warnings"])
    info = bed.daemons["lb"].virsh("dominfo", new)
    assert re.search(r"State:\s+running", info) and re.search(r"Persistent:\s+yes", info), info
    assert bed.states(name) == {"la": "", "lb": ""}, "undefined on la; known as the new name on lb"
    assert bed.running_on(new) == ["lb"]


def test_cancel_mid_way_under_a_bandwidth_cap_leaves_the_guest_running_on_the_source(
    bed: Bed,
) -> None:
    name = bed.boot("la", fill=160)
    migration_id = start_copying(name, bandwidth=8)
    seen: list[float] = []

    def moving() -> bool:
        record = runtime().store.get(migration_id)
        assert record is not None and not record.terminal, record
        processed = record.progress.get("memory_processed", 0.0)
        if processed and (not seen or processed > seen[-1]):
            seen.append(processed)
        return len(seen) >= 3

    wait_until(moving, "progress moving under the cap", 30, every=0.3)
    cancelled = cli(ENV, HOME, "cancel", migration_id)
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    final = wait_terminal(migration_id, 60)
    assert final.state == "cancelled", final
    assert bed.running_on(name) == ["la"]
    assert bed.states(name)["lb"] == "", "nothing left of the incoming domain on lb"
    counting_on(bed, "la", name, after=bed.console("la", name)[-1][1])


def test_a_guest_that_cannot_converge_is_aborted_at_the_completion_timeout(bed: Bed) -> None:
    # Dirtying 16 MiB/s over a 2 MiB/s link never converges; libvirt's job is aborted.
    name = bed.boot("la", fill=32, dirty=16)
    code, record = migrate_cli(name, "--from", "la", "--to", "lb", "--live", "--bandwidth", "2")
    assert code != 0 and record["state"] == "failed", record
    assert record["error"]["code"] == "NOT_CONVERGED", record["error"]
    assert bed.running_on(name) == ["la"]
    counting_on(bed, "la", name, after=bed.console("la", name)[-1][1])


def test_a_guest_that_cannot_converge_switches_to_postcopy_when_allowed(bed: Bed) -> None:
    name = bed.boot("la", fill=32, dirty=16)
    code, record = migrate_cli(
        name, "--from", "la", "--to", "lb", "--live", "--postcopy", "--bandwidth", "2"
    )
    assert code == 0 and record["state"] == "completed", (record["error"], record["warnings"])
    assert bed.running_on(name) == ["lb"]
    counting_on(bed, "lb", name)


def test_prepare_refuses_a_name_already_running_on_the_destination(bed: Bed) -> None:
    name = bed.boot("la", fill=16)
    bed.boot("lb", fill=16, name=name)  # another VM of that name (another uuid) runs on lb
    code, record = migrate_cli(name, "--from", "la", "--to", "lb", "--live")
    assert code != 0 and record["error"]["code"] == "DOMAIN_CONFLICT", record["error"]
    assert [p["name"] for p in record["phases"]][:2] == ["begin", "prepare"]
    assert "perform" not in [p["name"] for p in record["phases"]], "refused before anything moved"
    assert sorted(bed.running_on(name)) == ["la", "lb"], "both VMs still run where they were"
    bed.daemons["lb"].virsh("destroy", name)
    bed.daemons["lb"].virsh("undefine", name)


def test_prepare_refuses_a_cpu_the_destination_cannot_run(bed: Bed) -> None:
    name = bed.boot("la", fill=16)
    xml = bed.daemons["la"].virsh("dumpxml", "--migratable", name)
    wanted = re.sub(
        r"<cpu .*?</cpu>",
        "<cpu mode='custom' match='exact'><model fallback='forbid'>Icelake-Server</model></cpu>",
        xml,
        flags=re.S,
    )
    path = HOME / f"{name}-icelake.xml"
    path.write_text(wanted)
    code, record = migrate_cli(name, "--from", "la", "--to", "lb", "--live", "--xml", str(path))
    assert code != 0 and record["error"]["code"] == "CPU_INCOMPATIBLE", record["error"]
    assert "perform" not in [p["name"] for p in record["phases"]]
    assert bed.running_on(name) == ["la"]


def test_the_source_worker_killed_mid_perform_and_restarted_still_ends_the_migration(
    bed: Bed,
) -> None:
    name = bed.boot("la", fill=96)
    migration_id = start_copying(name, bandwidth=24)
    bed.fleet.stop("la", signal.SIGKILL)
    time.sleep(1)
    bed.start_worker("la")
    final = wait_terminal(migration_id, 120)
    assert final.state == "completed", final
    assert bed.running_on(name) == ["lb"], "libvirtd carried the migration on without the worker"
    counting_on(bed, "lb", name)


def test_the_destination_daemon_killed_mid_migration_leaves_the_guest_on_the_source(
    bed: Bed,
) -> None:
    name = bed.boot("la", fill=128)
    migration_id = start_copying(name, bandwidth=16)
    bed.daemons["lb"].kill_daemon()
    try:
        final = wait_terminal(migration_id, 120)
    finally:
        bed.daemons["lb"].start()
    assert final.state == "failed", final
    # libvirtd, restarted, removes the half-received domain; the guest runs on la only.
    wait_until(lambda: bed.running_on(name) == ["la"], "the guest on la only", 60)
    counting_on(bed, "la", name, after=bed.console("la", name)[-1][1])


def test_the_source_daemon_restarted_mid_migration_ends_it_with_the_guest_on_one_host(
    bed: Bed,
) -> None:
    name = bed.boot("la", fill=128)
    migration_id = start_copying(name, bandwidth=16)
    bed.daemons["la"].kill_daemon()
    time.sleep(2)
    bed.daemons["la"].start()
    final = wait_terminal(migration_id, 180)
    assert final.state in ("completed", "failed"), final
    where = "lb" if final.state == "completed" else "la"
    wait_until(lambda: bed.running_on(name) == [where], f"the guest on {where} only", 60)
    assert final.vm_host == where, final
    counting_on(
        bed, where, name, after=bed.console(where, name)[-1][1] if final.state == "failed" else 0
    )


def test_evacuating_a_libvirt_host_moves_every_domain_to_the_other(bed: Bed) -> None:
    names = [bed.boot("la", fill=16) for _ in range(3)]
    done = cli(ENV, HOME, "evacuate", "la", "--wait", "--json", timeout=300)
    items = json.loads(done.stdout)
    ours = [item for item in items if item["domain"] in names]
    assert len(ours) == 3 and all(item["destination"] == "lb" for item in ours), items
    assert all(item["state"] == "completed" for item in items), "\n".join(
        f"{i['domain']}: {i['state']} {i.get('error')}" for i in items
    )
    for name in names:
        assert bed.running_on(name) == ["lb"]


def test_a_migration_to_a_host_of_another_driver_is_refused_before_anything_runs(
    bed: Bed,
) -> None:
    name = bed.boot("la", fill=16)
    done = cli(ENV, HOME, "migrate", name, "--from", "la", "--to", "p3a", "--json")
    assert done.returncode != 0
    assert "DRIVER_MISMATCH" in done.stdout + done.stderr, done.stdout + done.stderr
    assert bed.running_on(name) == ["la"]


def test_a_destination_xml_that_keeps_the_abi_takes_effect_on_the_destination(bed: Bed) -> None:
    name = bed.boot("la", fill=16)
    xml = bed.daemons["la"].virsh("dumpxml", "--migratable", name)
    path = HOME / f"{name}-titled.xml"
    path.write_text(xml.replace("</name>", "</name>\n  <title>moved by vmigrate</title>", 1))
    code, record = migrate_cli(name, "--from", "la", "--to", "lb", "--live", "--xml", str(path))
    assert code == 0 and record["state"] == "completed", (record["error"], record["warnings"])
    assert "<title>moved by vmigrate</title>" in bed.daemons["lb"].virsh("dumpxml", name)
    counting_on(bed, "lb", name)


class DiskGuest:
    """A guest defined with virsh on ``la`` that writes records to its data disk, a qcow2 image
    at the same path on both daemons (each daemon has a private images directory)."""

    def __init__(
        self, bed: Bed, backing: str | None = None, fill: int = 16, data_mib: int = 0
    ) -> None:
        require_command("qemu-img", "qemu-utils")
        self.bed = bed
        self.name = unique("lvdisk")
        self.image = f"{self.name}.qcow2"
        source = bed.daemons["la"]
        path = source.image_file(self.image)
        path.parent.mkdir(parents=True, exist_ok=True)
        base = ["-b", f"{libvirt_bed.IMAGES_DIR}/{backing}", "-F", "raw"] if backing else []
        qemu_img("create", "-q", "-f", "qcow2", "-u", *base, str(path), "64M")
        if data_mib:  # data beyond the records, so that the copy takes a while
            write = f"write -P 7 8M {data_mib}M"
            subprocess.run(["qemu-io", "-f", "qcow2", "-c", write, str(path)], check=True)
        disk = f"{libvirt_bed.IMAGES_DIR}/{self.image}"
        self.xml = libvirt_bed.guest_definition(
            self.name, bed.kernel, bed.initrd, fill_mib=fill, disk=disk
        )
        xml_file = HOME / f"{self.name}.xml"
        xml_file.write_text(self.xml)
        source.virsh("define", str(xml_file))
        source.virsh("start", self.name)
        wait_until(lambda: len(self.writes("la")) >= 3, f"{self.name} writing", 90, every=0.3)
        wait_until(lambda: _listed(bed, "la", self.name), f"{self.name} listed", 20)

    def writes(self, host: str) -> list[int]:
        found = self.bed.daemons[host].console_file(self.name)
        text = found.read_text(errors="replace") if found.exists() else ""
        return [int(n) for n in re.findall(r"^W (\d+)$", text, re.M)]

    def migrate(self, *flags: str, **options: Any) -> str:
        request = MigrationRequest(self.name, "la", "lb", flags=["live", *flags], **options)
        return submit(request).id

    def records_on(self, host: str, upto: int) -> list[int]:
        daemon = self.bed.daemons[host]
        raw = HOME / f"{self.name}-{host}.raw"
        qemu_img("convert", "-U", "-O", "raw", str(daemon.image_file(self.image)), str(raw))
        data = raw.read_bytes()
        boot_id = HEARTBEAT.findall(self.bed.daemons["la"].console_file(self.name).read_text())[0][
            0
        ]
        return [
            i
            for i in range(1, upto + 1)
            if data[512 * i :].startswith(f"REC {boot_id} {i}\n".encode())
        ]


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def test_copy_storage_all_moves_a_guest_writing_to_its_local_disk(bed: Bed) -> None:
    """The same path, a different disk on each daemon, as on hosts without shared storage:
    libvirt copies the disk, Prepare created the destination's image."""
    guest = DiskGuest(bed)
    final = wait_terminal(guest.migrate("copy_storage_all"), timeout=180)
    assert final.state == "completed", final.error
    assert bed.running_on(guest.name) == ["lb"]
    assert final.progress.get("disk_total", 0) > 0, final.progress
    wait_until(lambda: len(guest.writes("lb")) >= 3, f"{guest.name} writing on lb", 60)
    before, after = guest.writes("la"), guest.writes("lb")
    joined = sorted(set(before + after))
    assert joined == list(range(joined[0], joined[-1] + 1)), "no record missing"
    dest = bed.daemons["lb"]
    assert "BAD" not in dest.console_file(guest.name).read_text(errors="replace")
    dest.virsh("destroy", guest.name)
    assert guest.records_on("lb", before[-1]) == list(range(1, before[-1] + 1))
    assert max(guest.records_on("la", after[-1])) <= before[-1] + 1, "the source's disk untouched"


def test_copy_storage_inc_over_a_backing_file_both_daemons_have(bed: Bed) -> None:
    base = f"{unique('base')}.raw"
    for daemon in bed.daemons.values():
        path = daemon.image_file(base)
        path.parent.mkdir(parents=True, exist_ok=True)
        qemu_img("create", "-q", "-f", "raw", str(path), "64M")
    guest = DiskGuest(bed, backing=base)
    final = wait_terminal(guest.migrate("copy_storage_inc"), timeout=180)
    assert final.state == "completed", final.error
    wait_until(lambda: len(guest.writes("lb")) >= 3, f"{guest.name} writing on lb", 60)
    info = subprocess.run(
        ["qemu-img", "info", "-U", str(bed.daemons["lb"].image_file(guest.image))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"backing file: {libvirt_bed.IMAGES_DIR}/{base}" in info, info
    bed.daemons["lb"].virsh("destroy", guest.name)


@pytest.mark.parametrize("stage", ["disk", "memory"])
def test_cancel_removes_the_created_image_and_a_second_migration_works(
    bed: Bed, stage: str
) -> None:
    guest = DiskGuest(bed, data_mib=48, fill=64 if stage == "memory" else 16)
    migration = guest.migrate("copy_storage_all", bandwidth=8)
    # libvirt copies the disks first, then memory
    key = "disk_processed" if stage == "disk" else "memory_processed"
    wait_until(
        lambda: (runtime().store.get(migration).progress or {}).get(key, 0) > 2**22,
        f"copying the {stage}",
        120,
        every=0.2,
    )
    assert cli(ENV, HOME, "cancel", migration).returncode == 0
    final = wait_terminal(migration, timeout=60)
    assert final.state == "cancelled", (final.state, final.error)
    assert bed.running_on(guest.name) == ["la"]
    assert not bed.daemons["lb"].image_file(guest.image).exists(), "Prepare's image removed"
    writes = len(guest.writes("la"))
    wait_until(lambda: len(guest.writes("la")) > writes, "the guest writing on", 30)
    again = wait_terminal(guest.migrate("copy_storage_all"), timeout=180)
    assert again.state == "completed", again.error
    bed.daemons["lb"].virsh("destroy", guest.name)


def test_the_destination_qemu_killed_during_the_disk_copy(bed: Bed) -> None:
    guest = DiskGuest(bed, data_mib=48)
    migration = guest.migrate("copy_storage_all", bandwidth=8)
    wait_until(
        lambda: (runtime().store.get(migration).progress or {}).get("disk_processed", 0) > 2**21,
        "copying the disk",
        120,
        every=0.2,
    )
    pidfile = bed.daemons["lb"].root / "run" / "qemu" / f"{guest.name}.pid"
    os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)  # the incoming QEMU, on lb
    final = wait_terminal(migration, timeout=90)
    assert final.state == "failed", (final.state, final.error)
    assert bed.running_on(guest.name) == ["la"]
    assert not bed.daemons["lb"].image_file(guest.image).exists(), "Prepare's image removed"
    writes = len(guest.writes("la"))
    wait_until(lambda: len(guest.writes("la")) > writes, "the guest writing on", 30)
    bed.daemons["la"].virsh("destroy", guest.name)


def test_host_files_outside_the_storage_roots_are_refused_at_define_and_prepare(bed: Bed) -> None:
    from tasks.errors import VMigrateError
    from tasks.host_commands import call_host

    outside = libvirt_bed.guest_definition(unique("out"), bed.kernel, bed.initrd, disk="/etc/x")
    with pytest.raises(VMigrateError) as refused:
        call_host("la", "define", {"xml": outside})
    assert refused.value.code == "PATH_OUTSIDE_STORAGE_ROOTS" and "/etc/x" in refused.value.message
    guest = DiskGuest(bed)
    defined = bed.daemons["la"].virsh("dumpxml", "--migratable", guest.name)
    escape = defined.replace(f"{libvirt_bed.IMAGES_DIR}/{guest.image}", "/etc/shadow")
    record = submit(MigrationRequest(guest.name, "la", "lb", xml=escape, flags=["live"]))
    final = wait_terminal(record.id, timeout=60)
    assert final.error and final.error["code"] == "PATH_OUTSIDE_STORAGE_ROOTS", final.error
    assert bed.running_on(guest.name) == ["la"]
    bed.daemons["la"].virsh("destroy", guest.name)
