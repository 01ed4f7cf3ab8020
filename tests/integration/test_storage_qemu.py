"""Storage migration on the QEMU driver, with a real guest writing to its disk while it moves.

The guest boots from its own disk (vda, vmigrate/disk_image.py) and writes numbered records to a
data disk (vdb), reading back older ones from the disk itself (vmigrate/guest.py, ``vm.disk``).
Both hosts run on this machine, so the destination XML (``--xml``) puts the destination's
images, and its console file, in a directory of their own: local disks, not shared ones.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.cancel import request_cancel
from tasks.errors import Refused, VMigrateError
from tasks.host_commands import call_host
from tasks.runtime import runtime
from tasks.submission import MigrationRequest, submit
from tests.conftest import HOME, REDIS_URL
from tests.environment import require_command
from tests.helpers import unique, wait_terminal, wait_until
from tests.integration.test_disk_image import require_image_tools
from tests.integration.test_qemu import QEMU_ENV, list_qemus, require_qemu
from vmigrate.disk_image import build_boot_image, virt_install_xml
from vmigrate.fleet import LocalFleet
from vmigrate.guest import build_initramfs
from workers.drivers.qemu import process, qmp

HOSTS = ("sa", "sb")
WRITE = re.compile(r"^W (\d+)$", re.M)
BOOT_ID = re.compile(r"HB (\S+) \d+")
CMDLINE = "console=ttyS0 vm.hb=ttyS1 quiet panic=-1 vm.fill=16 vm.disk=data"
MIB = 2**20


@pytest.fixture(scope="module")
def bed(fleet: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    kernel = require_qemu()
    require_image_tools()
    require_command("qemu-img", "qemu-utils")
    base = tmp_path_factory.mktemp("storage")
    initrd = build_initramfs(base / "initrd.cpio")
    env = {"VMIGRATE_BROKER_URL": REDIS_URL, **QEMU_ENV, "VMIGRATE_STORAGE_ROOTS": str(base)}
    local = LocalFleet(env, HOME)
    try:
        for host in HOSTS:
            local.start_host(host, "--driver", "qemu", "--memory-mib", "4096", protocols="3")
        local.wait_ready(runtime().redis, list(HOSTS))
        boot = build_boot_image(base / "boot.template", kernel, initrd, CMDLINE)
        yield {"base": base, "boot": boot, "fleet": local}
    finally:
        local.stop_all()
        for host in HOSTS:
            for pid in list_qemus(host):
                os.kill(pid, signal.SIGKILL)


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


class Guest:
    """A writer guest defined and started on ``sa``, its images in ``src``; ``dst`` is where
    the destination XML puts the destination's."""

    def __init__(self, bed: dict[str, Any], fmt: str = "raw", backing: Path | None = None):
        self.name = unique("disk")
        self.src = bed["base"] / self.name / "src"
        self.dst = bed["base"] / self.name / "dst"
        self.src.mkdir(parents=True)
        self.dst.mkdir()
        boot = self.src / "boot.img"
        boot.write_bytes(bed["boot"].read_bytes())
        self.fmt = fmt
        self.data = self.src / f"data.{fmt}"
        if backing is not None:
            qemu_img("create", "-q", "-f", "qcow2", "-b", str(backing), "-F", "raw", str(self.data))
        else:
            qemu_img("create", "-q", "-f", fmt, str(self.data), "64M")
        xml = virt_install_xml(self.name, boot, data_disk=self.data, data_format=fmt)
        call_host("sa", "define", {"xml": xml})
        call_host("sa", "start", {"name": self.name})
        wait_until(lambda: len(self.writes("sa")) >= 3, f"{self.name} writing", 120, every=0.3)
        self.boot_id = BOOT_ID.findall(self.console("sa"))[0]

    def console(self, host: str) -> str:
        path = HOME / "hosts" / host / "domains" / self.name / "console.log"
        moved = self.dst / "console.log"  # where the destination XML puts sb's console
        found = moved if host == "sb" and moved.exists() else path
        return found.read_text(errors="replace") if found.exists() else ""

    def writes(self, host: str) -> list[int]:
        return [int(n) for n in WRITE.findall(self.console(host))]

    def dest_xml(self) -> str:
        xml = str(call_host("sa", "dumpxml", {"name": self.name}))
        xml = xml.replace(str(self.src), str(self.dst))
        return re.sub(r"(['\"])heartbeat\.log\1", f"'{self.dst / 'console.log'}'", xml)

    def migrate(self, *flags: str, **options: Any) -> str:
        request = MigrationRequest(
            self.name,
            "sa",
            "sb",
            xml=self.dest_xml(),
            flags=["live", *flags],
            **options,
        )
        return submit(request).id

    def records(self, image: Path, fmt: str, upto: int) -> list[int]:
        """The records 1..upto found in ``image`` (read as raw)."""
        raw = image
        if fmt != "raw":
            raw = image.with_suffix(".read")
            qemu_img("convert", "-U", "-f", fmt, "-O", "raw", str(image), str(raw))
        found = []
        with open(raw, "rb") as handle:
            for i in range(1, upto + 1):
                handle.seek(512 * i)
                if handle.read(64).split(b"\n")[0] == f"REC {self.boot_id} {i}".encode():
                    found.append(i)
        return found

    def qmp_socket(self, host: str) -> Path:
        return process.paths_for(HOME / "hosts" / host, self.name).qmp

    def pids_on(self, host: str) -> list[int]:
        mine = f"guest={self.name}\0".encode()
        return [p for p in list_qemus(host) if mine in Path(f"/proc/{p}/cmdline").read_bytes()]

    def running_on(self, host: str) -> bool:
        return bool(self.pids_on(host))

    def stop_on(self, host: str) -> None:
        for pid in self.pids_on(host):
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not self.running_on(host), f"{self.name} stopped on {host}", 15)


def test_copy_storage_all_moves_a_guest_writing_to_its_disk_with_no_gap(bed):
    guest = Guest(bed, "qcow2")
    final = wait_terminal(guest.migrate("copy_storage_all"), timeout=240)
    assert final.state == "completed", final.error
    assert final.progress.get("disk_total", 0) >= 64 * MIB, final.progress
    wait_until(lambda: len(guest.writes("sb")) >= 5, "the guest writing on the destination", 60)
    before, after = guest.writes("sa"), guest.writes("sb")
    assert "BAD" not in guest.console("sa") + guest.console("sb")
    joined = sorted(set(before + after))
    assert joined == list(range(joined[0], joined[-1] + 1)), "no record missing"
    assert after[0] <= before[-1] + 1, "the destination goes on where the source stopped"
    assert not guest.running_on("sa") and guest.running_on("sb")
    assert (guest.dst / "console.log").exists(), "the destination XML's console path is used"
    guest.stop_on("sb")
    last = before[-1]
    dest = guest.records(guest.dst / "data.qcow2", "qcow2", last)
    assert dest == list(range(1, last + 1)), "every record of the source is in the copy"
    source = guest.records(guest.data, "qcow2", after[-1])
    assert max(source) <= last + 1, "the destination never wrote to the source's image"
    assert not qmp_jobs(guest, "sa"), "no mirror left behind"


def qmp_jobs(guest: Guest, host: str) -> list[Any]:
    try:
        return list(qmp.execute(guest.qmp_socket(host), "query-jobs"))
    except qmp.QMPError:
        return []  # no QEMU there any more


def test_copy_storage_inc_copies_the_overlay_over_a_backing_file_both_hosts_have(bed):
    base = bed["base"] / unique("base") / "base.raw"
    base.parent.mkdir()
    qemu_img("create", "-q", "-f", "raw", str(base), "64M")
    guest = Guest(bed, "qcow2", backing=base)
    shutil.copy(guest.src / "boot.img", guest.dst / "boot.img")  # the boot disk: already there
    final = wait_terminal(guest.migrate("copy_storage_inc", migrate_disks=["vdb"]), timeout=240)
    assert final.state == "completed", final.error
    wait_until(lambda: len(guest.writes("sb")) >= 3, "the guest writing on the destination", 60)
    assert "BAD" not in guest.console("sb")
    info = subprocess.run(
        ["qemu-img", "info", "-U", str(guest.dst / "data.qcow2")], capture_output=True, text=True
    ).stdout
    assert f"backing file: {base}" in info, info
    assert final.progress["disk_total"] < 32 * MIB, "only the overlay's data was copied"
    guest.stop_on("sb")


def test_a_missing_backing_file_is_refused_at_prepare_and_the_guest_stays(bed):
    base = bed["base"] / unique("gone") / "base.raw"
    base.parent.mkdir()
    qemu_img("create", "-q", "-f", "raw", str(base), "64M")
    guest = Guest(bed, "qcow2", backing=base)
    xml = guest.dest_xml()
    os.rename(base, base.with_suffix(".moved"))  # the destination cannot find it ...
    try:
        record = submit(
            MigrationRequest(guest.name, "sa", "sb", xml=xml, flags=["live", "copy_storage_inc"])
        )
        final = wait_terminal(record.id, timeout=60)
    finally:
        os.rename(base.with_suffix(".moved"), base)  # ... and the source still has it
    assert final.state == "failed" and final.error["code"] == "BACKING_MISSING", final.error
    assert guest.running_on("sa") and not list(guest.dst.iterdir())
    guest.stop_on("sa")


@pytest.mark.parametrize("stage", ["disk", "memory"])
def test_cancel_leaves_the_source_on_its_disks_and_a_second_migration_works(bed, stage):
    guest = Guest(bed)
    subprocess.run(  # data to copy beyond the records, so the disk copy takes a while
        [
            "dd",
            "if=/dev/urandom",
            f"of={guest.data}",
            "bs=1M",
            "seek=8",
            "count=48",
            "conv=notrunc",
        ],
        check=True,
        capture_output=True,
    )
    migration = guest.migrate("copy_storage_all", bandwidth=8)

    def copying() -> bool:
        record = runtime().store.get(migration)
        progress = record.progress if record else {}
        if stage == "disk":
            return progress.get("disk_processed", 0) > 4 * MIB
        return progress.get("memory_processed", 0) > 4 * MIB

    wait_until(copying, f"copying {stage}", 120, every=0.1)
    request_cancel(migration)
    final = wait_terminal(migration, timeout=60)
    assert final.state == "cancelled", (final.state, final.error)
    assert guest.running_on("sa") and not guest.running_on("sb")
    assert not qmp_jobs(guest, "sa"), "the mirrors are gone"
    assert not list(guest.dst.glob("*.img")) and not list(guest.dst.glob("*.raw"))
    writes = len(guest.writes("sa"))
    wait_until(lambda: len(guest.writes("sa")) > writes, "the source guest writing on", 30)
    again = wait_terminal(guest.migrate("copy_storage_all"), timeout=240)
    assert again.state == "completed", again.error
    guest.stop_on("sb")


def test_the_source_worker_killed_during_the_disk_copy_and_restarted_completes(bed):
    """The mirrors go on while the worker is dead; the restarted worker polls them to the end."""
    guest = Guest(bed)
    migration = guest.migrate("copy_storage_all", bandwidth=64)  # done within the timeout
    wait_until(
        lambda: (runtime().store.get(migration).progress or {}).get("disk_processed", 0) > MIB,
        "copying the disk",
        120,
        every=0.1,
    )
    local = bed["fleet"]
    local.stop("sa", signal.SIGKILL)
    local.start_host("sa", "--driver", "qemu", "--memory-mib", "4096", protocols="3")
    final = wait_terminal(migration, timeout=240)
    assert final.state == "completed", final.error
    wait_until(lambda: len(guest.writes("sb")) >= 3, "the guest writing on the destination", 60)
    before, after = guest.writes("sa"), guest.writes("sb")
    joined = sorted(set(before + after))
    assert joined == list(range(joined[0], joined[-1] + 1)), "no record missing"
    assert not guest.running_on("sa")
    guest.stop_on("sb")
    assert guest.records(guest.dst / "data.raw", "raw", before[-1]) == list(
        range(1, before[-1] + 1)
    )


def test_the_destination_qemu_killed_during_the_disk_copy(bed):
    guest = Guest(bed)
    migration = guest.migrate("copy_storage_all", bandwidth=4)
    wait_until(
        lambda: (runtime().store.get(migration).progress or {}).get("disk_processed", 0) > MIB,
        "copying the disk",
        120,
        every=0.1,
    )
    for pid in list_qemus("sb"):
        os.kill(pid, signal.SIGKILL)
    final = wait_terminal(migration, timeout=90)
    assert final.state == "failed", final.state
    assert guest.running_on("sa") and not qmp_jobs(guest, "sa")
    assert not (guest.dst / "boot.img").exists(), "Prepare's images are removed"
    guest.stop_on("sa")


def test_disks_outside_the_storage_roots_are_refused_at_define_and_at_prepare(bed, tmp_path):
    outside = Path("/var/tmp") / f"{unique('outside')}.img"
    outside.write_bytes(b"\0" * MIB)
    try:
        xml = virt_install_xml(unique("out"), outside)
        with pytest.raises(VMigrateError) as refused:
            call_host("sa", "define", {"xml": xml})
        assert refused.value.code == "PATH_OUTSIDE_STORAGE_ROOTS"
        assert str(outside) in refused.value.message and "storage_roots" in refused.value.message
        guest = Guest(bed)
        escape = guest.dest_xml().replace(str(guest.dst / "data.raw"), str(outside))
        record = submit(MigrationRequest(guest.name, "sa", "sb", xml=escape, flags=["live"]))
        final = wait_terminal(record.id, timeout=60)
        assert final.error["code"] == "PATH_OUTSIDE_STORAGE_ROOTS", final.error
        assert guest.running_on("sa") and not guest.running_on("sb")
        link = guest.dst / "data.raw"
        link.symlink_to(outside)  # a symlink inside the roots that leads out is refused too
        record = submit(
            MigrationRequest(guest.name, "sa", "sb", xml=guest.dest_xml(), flags=["live"])
        )
        final = wait_terminal(record.id, timeout=60)
        assert final.error["code"] == "PATH_OUTSIDE_STORAGE_ROOTS", final.error
        guest.stop_on("sa")
    finally:
        outside.unlink()


def test_through_the_rest_api_a_destination_xml_naming_a_host_file_is_refused(bed, api):
    """The reported hole: an API client's destination XML made the destination's root QEMU
    open an arbitrary host file as the guest's disk. Now Prepare refuses it, and the guest,
    copied with the API's own option names, stays where it runs."""
    from vmigrate.client import Client

    guest = Guest(bed)
    escape = guest.dest_xml().replace(str(guest.dst / "data.raw"), "/etc/passwd")
    client = Client(api, "test-token-1")
    created = client.migrate(
        guest.name, "sa", "sb", xml=escape, live=True, **{"copy-storage-all": True}
    )
    final = client.wait(created["id"], timeout=120)
    assert final["state"] == "failed", final
    assert final["error"]["code"] == "PATH_OUTSIDE_STORAGE_ROOTS"
    assert "/etc/passwd" in final["error"]["message"]
    assert guest.running_on("sa") and not guest.running_on("sb")
    guest.stop_on("sa")


def test_without_a_copy_flag_a_disk_the_destination_lacks_is_named(bed):
    guest = Guest(bed)
    final = wait_terminal(guest.migrate(), timeout=60)
    assert final.state == "failed" and final.error["code"] == "DISK_NOT_SHARED", final.error
    assert "--copy-storage-all" in final.error["message"]
    with pytest.raises(Refused) as refused:
        guest.migrate("copy_storage_all", migrate_disks=["vdz"])
    assert refused.value.code == "DISK_NOT_FOUND"
    assert guest.running_on("sa")
    guest.stop_on("sa")
