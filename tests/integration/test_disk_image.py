"""The bootable disk image (vmigrate/disk_image.py): the firmware boots it, no direct kernel boot.

QEMU gets only the disk (``-drive if=virtio``): SeaBIOS runs syslinux's MBR code, syslinux loads
the kernel and the busy guest's initramfs from the FAT partition, and the guest's heartbeat appears
on its serial console. The storage tests' guest is built from this image.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from tests.environment import missing_dependency
from tests.helpers import wait_until
from vmigrate import disk_image
from vmigrate.guest import GuestUnavailable, build_initramfs, find_kernel

HEARTBEAT = re.compile(r"HB (\S+) (\d+)")


def require_image_tools() -> None:
    problem = disk_image.missing() or (
        None if shutil.which("qemu-system-x86_64") else "qemu-system-x86_64 is not installed"
    )
    try:
        find_kernel()
    except GuestUnavailable as exc:
        problem = problem or str(exc)
    if problem is None:
        return
    missing_dependency(f"{problem}: {disk_image.INSTALL} qemu-system-x86")


def test_the_partition_table_is_one_active_fat_partition_from_1_mib():
    table = disk_image.partition_table(64 * 2**20)
    assert len(table) == 66 and table[-2:] == b"\x55\xaa"
    assert table[0] == 0x80 and table[4] == 0x0C, "active, FAT32 (LBA)"
    assert int.from_bytes(table[8:12], "little") == 2048
    assert int.from_bytes(table[12:16], "little") == 64 * 2048 - 2048
    assert table[16:64] == bytes(48), "the other three entries are empty"


def test_the_firmware_boots_the_image_into_the_busy_guest(tmp_path):
    require_image_tools()
    initrd = build_initramfs(tmp_path / "initrd.cpio")
    image = disk_image.build_boot_image(
        tmp_path / "guest.img",
        find_kernel(),
        initrd,
        "console=ttyS0 quiet panic=-1 vm.fill=16 vm.dirty=0",
    )
    console = tmp_path / "console.log"
    qemu = subprocess.Popen(
        [
            "qemu-system-x86_64",
            "-machine",
            "pc,accel=tcg",
            "-m",
            "256",
            "-nodefaults",
            "-display",
            "none",
            "-drive",
            f"file={image},format=raw,if=virtio",
            "-serial",
            f"file:{console}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        beats = wait_until(
            lambda: console.exists() and HEARTBEAT.findall(console.read_text(errors="replace"))[2:],
            "three heartbeats from the disk-booted guest",
            120,
            every=0.5,
        )
        assert len({boot for boot, _ in beats}) == 1
    finally:
        qemu.kill()
        qemu.wait(10)
