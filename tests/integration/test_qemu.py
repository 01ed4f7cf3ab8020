"""Real QEMU guests migrated through the whole system: host workers, dispatchers, Redis.

The guest is a Debian kernel with a busybox initramfs that prints ``HB <boot-id> <counter>`` on its
serial console and dirties memory at a chosen rate. Domain type ``qemu`` (TCG): these machines'
/dev/kvm is PVM, under which a stock guest kernel does not boot.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from tasks.cancel import request_cancel
from tasks.host_commands import call_host
from tasks.runtime import runtime
from tasks.submission import MigrationRequest, submit
from tests.conftest import FAST_RECOVERY, HOME, REDIS_URL
from tests.environment import missing_dependency
from tests.helpers import live_copies, unique, wait_terminal, wait_until
from vmigrate.fleet import LocalFleet
from vmigrate.guest import GuestUnavailable, build_initramfs, find_kernel, guest_xml

HEARTBEAT = re.compile(r"HB (\S+) (\d+)")
QEMU_ENV = {**FAST_RECOVERY, "VMIGRATE_COMPLETION_TIMEOUT_PER_GIB": "20"}


def require_qemu() -> Path:
    try:
        kernel = find_kernel()
    except GuestUnavailable as exc:
        missing = str(exc)
    else:
        if shutil.which("qemu-system-x86_64"):
            return kernel
        missing = "qemu-system-x86_64 is missing: apt-get install qemu-system-x86"
    missing_dependency(missing)


@pytest.fixture(scope="module")
def qemu_fleet(fleet, tmp_path_factory):
    kernel = require_qemu()
    initrd = build_initramfs(tmp_path_factory.mktemp("guest") / "initrd.cpio")
    roots = {"VMIGRATE_STORAGE_ROOTS": f"/boot:{tmp_path_factory.getbasetemp()}"}
    local = LocalFleet({"VMIGRATE_BROKER_URL": REDIS_URL, **QEMU_ENV, **roots}, HOME)
    try:
        for host in ("qa", "qb"):
            local.start_host(host, "--driver", "qemu", "--memory-mib", "4096", protocols="2,3")
        local.wait_ready(runtime().redis, ["qa", "qb"])
        yield local, kernel, initrd
    finally:
        local.stop_all()
        for host in ("qa", "qb"):
            for dom in list_qemus(host):
                os.kill(dom, signal.SIGKILL)


def list_qemus(host: str) -> list[int]:
    """pids of live QEMU processes whose state lives under ``host``'s state directory."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        mine = f"{HOME}/hosts/{host}/" in cmd  # this run's, not another run's at the same time
        if cmd.startswith("qemu-system") and mine and state != "Z":
            pids.append(int(proc.name))
    return pids


def qemus_of(name: str) -> list[str]:
    """Hosts whose live QEMU runs the guest ``name``."""
    return [
        h
        for h in ("qa", "qb")
        for pid in list_qemus(h)
        if f"guest={name} "
        in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode() + " "
    ]


def console(host: str, name: str) -> list[tuple[str, int]]:
    path = HOME / "hosts" / host / "domains" / name / "console.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    return [(b, int(n)) for b, n in HEARTBEAT.findall(text)]


UUIDS: dict[str, str] = {}


def boot(qemu_fleet, host: str, fill: int = 32, dirty: int = 0) -> str:
    _, kernel, initrd = qemu_fleet
    name = unique("guest")
    xml = guest_xml(name, kernel, initrd, memory_mib=256, fill_mib=fill, dirty_mib=dirty)
    UUIDS[name] = call_host(host, "define", {"xml": xml})["uuid"]
    call_host(host, "start", {"name": name})
    wait_until(lambda: len(console(host, name)) >= 3, f"guest {name} booted", 90, every=0.3)
    return name


def counting_on(host: str, name: str) -> None:
    """The guest's heartbeat counter on ``host`` moves on from where it is now: it runs. (Right
    after a migration the destination's console may have nothing yet.)"""
    before = wait_until(lambda: console(host, name), f"{name} printing on {host}", 30)[-1][1]
    wait_until(lambda: console(host, name)[-1][1] > before, f"{name} counting on {host}", 30)


def in_progress(migration_id: str) -> None:
    """Perform is copying: some bytes are sent and some remain."""

    def copying():
        record = runtime().store.get(migration_id)
        progress = record.progress
        return record.state == "perform" and progress.get("memory_processed", 0) > 0

    wait_until(copying, "Perform seen copying", 60)


def wait_state(migration_id: str, state: str, timeout: float = 60) -> None:
    wait_until(lambda: runtime().store.get(migration_id).state == state, state, timeout)


def test_live_migration_keeps_the_guest_running(qemu_fleet):
    name = boot(qemu_fleet, "qa")
    record = submit(MigrationRequest(name, "qa", "qb", flags=["live"]))
    final = wait_terminal(record.id, timeout=120)
    assert final.state == "completed" and final.protocol == 3, final.error
    source_last = console("qa", name)[-1]
    wait_until(lambda: len(console("qb", name)) >= 2, "the destination counting")
    after = console("qb", name)
    assert {b for b, _ in after} == {source_last[0]}  # the same boot: not a reboot
    assert after[0][1] == source_last[1] + 1  # the counter goes on where the source stopped
    assert after[-1][1] > after[0][1]  # and keeps going
    assert qemus_of(name) == ["qb"]  # the source QEMU is gone; exactly one QEMU runs it
    assert live_copies(UUIDS[name]) == [("qb", name, "running")]


def test_bandwidth_cap_makes_a_migration_take_seconds_with_live_progress(qemu_fleet):
    name = boot(qemu_fleet, "qa", fill=96)
    record = submit(MigrationRequest(name, "qa", "qb", flags=["live"], bandwidth=24))
    wait_state(record.id, "perform")
    seen = []  # what `vmigrate show` said while Perform ran: (processed, remaining)
    while (current := runtime().store.get(record.id)).state == "perform":
        progress = current.progress
        if progress.get("memory_processed"):
            seen.append((progress["memory_processed"], progress.get("memory_remaining", 0)))
        time.sleep(0.1)  # the pace of a person refreshing `vmigrate show`, not a wait for state
    final = wait_terminal(record.id)
    assert final.state == "completed"
    # Capped at 24 MiB/s, the copy of 96 MiB was seen in progress at several byte counts, each
    # further along, with memory still to send: the cap held it back, and progress was live.
    processed = sorted({p for p, _ in seen})
    assert len(processed) >= 3, seen
    assert [p for p, _ in seen] == sorted(p for p, _ in seen)
    assert any(remaining > 0 for _, remaining in seen)
    assert final.progress["transferred"] >= 96 * 2**20 > processed[0]


def test_cancel_in_the_middle_keeps_the_source(qemu_fleet):
    name = boot(qemu_fleet, "qa", fill=96)
    record = submit(MigrationRequest(name, "qa", "qb", flags=["live"], bandwidth=8))
    in_progress(record.id)
    request_cancel(record.id)
    final = wait_terminal(record.id, timeout=60)
    assert final.state == "cancelled"
    assert qemus_of(name) == ["qa"]
    counting_on("qa", name)  # the source guest runs on


def test_destination_qemu_killed_mid_migration_resumes_the_source(qemu_fleet):
    name = boot(qemu_fleet, "qa", fill=96)
    record = submit(MigrationRequest(name, "qa", "qb", flags=["live"], bandwidth=8))
    in_progress(record.id)
    (victim,) = [
        pid
        for pid in list_qemus("qb")
        if f"guest={name}" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    ]
    os.kill(victim, signal.SIGKILL)
    final = wait_terminal(record.id, timeout=60)
    assert final.state == "failed" and final.vm_host == "qa"
    assert qemus_of(name) == ["qa"]
    counting_on("qa", name)


def test_worker_restart_keeps_the_vm_and_control(qemu_fleet):
    local, _, _ = qemu_fleet
    name = boot(qemu_fleet, "qa")
    local.stop("qa", signal.SIGKILL)
    local.start_host("qa", "--driver", "qemu", "--memory-mib", "4096", protocols="2,3")
    runtime().redis.delete("vmigrate:host:qa:alive")
    local.wait_ready(runtime().redis, ["qa"])
    assert qemus_of(name) == ["qa"]
    record = submit(MigrationRequest(name, "qa", "qb", flags=["live"]))  # still controllable
    assert wait_terminal(record.id, timeout=120).state == "completed"
    assert qemus_of(name) == ["qb"]


def test_a_guest_dirtying_faster_than_the_cap_is_aborted_and_keeps_running(qemu_fleet):
    name = boot(qemu_fleet, "qa", fill=32, dirty=16)
    record = submit(MigrationRequest(name, "qa", "qb", flags=["live"], bandwidth=2))
    final = wait_terminal(record.id, timeout=120)
    assert final.state == "failed" and final.error["code"] == "NOT_CONVERGED"
    assert qemus_of(name) == ["qa"]


def test_a_guest_dirtying_faster_than_the_cap_switches_to_postcopy_when_allowed(qemu_fleet):
    name = boot(qemu_fleet, "qa", fill=32, dirty=16)
    record = submit(MigrationRequest(name, "qa", "qb", flags=["live", "postcopy"], bandwidth=2))
    final = wait_terminal(record.id, timeout=120)
    assert final.state == "completed", final.error
    assert qemus_of(name) == ["qb"]
    source_boot = console("qa", name)[-1][0]
    counting_on("qb", name)
    assert console("qb", name)[-1][0] == source_boot


def test_source_worker_killed_mid_perform_and_restarted_completes(qemu_fleet):
    """QEMU migrates on while its worker is dead: the restarted worker polls it to the end."""
    local, _, _ = qemu_fleet
    name = boot(qemu_fleet, "qa", fill=96)
    local.stop("qa", signal.SIGKILL)
    local.env["VMIGRATE_TEST_CRASH"] = "poll"
    try:
        local.start_host("qa", "--driver", "qemu", "--memory-mib", "4096", protocols="2,3")
    finally:
        local.env.pop("VMIGRATE_TEST_CRASH")
    runtime().redis.delete("vmigrate:host:qa:alive")
    local.wait_ready(runtime().redis, ["qa"])
    record = submit(MigrationRequest(name, "qa", "qb", flags=["live"], bandwidth=24))
    local.processes["qa"].wait(60)
    local.start_host("qa", "--driver", "qemu", "--memory-mib", "4096", protocols="2,3")
    final = wait_terminal(record.id, timeout=120)
    assert final.state == "completed", final.error
    assert qemus_of(name) == ["qb"]
    source_last = console("qa", name)[-1]
    counting_on("qb", name)
    assert console("qb", name)[-1][0] == source_last[0]


def test_destination_worker_killed_mid_perform_and_restarted_completes(qemu_fleet):
    local, _, _ = qemu_fleet
    name = boot(qemu_fleet, "qa", fill=96)
    record = submit(MigrationRequest(name, "qa", "qb", flags=["live"], bandwidth=24))
    in_progress(record.id)
    local.stop("qb", signal.SIGKILL)  # the worker, not its QEMU, which keeps receiving
    local.start_host("qb", "--driver", "qemu", "--memory-mib", "4096", protocols="2,3")
    final = wait_terminal(record.id, timeout=120)
    assert final.state == "completed", final.error
    assert qemus_of(name) == ["qb"]


def test_a_disk_booted_vm_written_as_virt_install_writes_it_boots_and_migrates_live(
    qemu_fleet, tmp_path
):
    from tests.integration.test_disk_image import require_image_tools
    from vmigrate.disk_image import build_boot_image, virt_install_xml

    require_image_tools()
    _, kernel, initrd = qemu_fleet
    image = build_boot_image(
        tmp_path / "vi.img",
        kernel,
        initrd,
        "console=ttyS0 vm.hb=ttyS1 quiet panic=-1 vm.fill=32 vm.dirty=2",
    )
    name = unique("vi")
    UUIDS[name] = call_host("qa", "define", {"xml": virt_install_xml(name, image)})["uuid"]
    call_host("qa", "start", {"name": name})
    beats = wait_until(lambda: console("qa", name)[2:], f"{name} booted from its disk", 120)
    record = submit(MigrationRequest(name, "qa", "qb", flags=["live"]))
    final = wait_terminal(record.id, timeout=120)
    assert final.state == "completed", final.error
    counting_on("qb", name)
    assert {boot for boot, _ in console("qb", name)} == {beats[0][0]}, "the same boot goes on"
    assert qemus_of(name) == ["qb"]
