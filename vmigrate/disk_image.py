"""A bootable disk image of the busy test guest, booted by the firmware (no direct kernel boot).

An MBR disk (syslinux's boot code) with one active FAT partition holding syslinux, the kernel, the
initramfs of vmigrate/guest.py and a ``syslinux.cfg`` that boots them with the guest's command line.
Built without mounting anything, from Debian's packages: ``dosfstools`` (mkfs.vfat on a file),
``mtools`` (mcopy into it), ``syslinux`` and ``syslinux-common`` (its installer and MBR code).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

MBR_CODE = Path("/usr/lib/syslinux/mbr/mbr.bin")
INSTALL = "apt-get install syslinux syslinux-common mtools dosfstools"
SECTOR = 512
FIRST_SECTOR = 2048  # the partition starts at 1 MiB, as partitioning tools align it
FAT32_LBA = 0x0C


class ImageUnavailable(RuntimeError):
    """A tool the image needs is missing; the message says what to install."""


def missing() -> str | None:
    for tool in ("mkfs.vfat", "mcopy", "syslinux"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    if not MBR_CODE.is_file():
        return f"{MBR_CODE} is missing"
    return None


def partition_table(disk_bytes: int) -> bytes:
    """The 64-byte MBR partition table and signature: one active FAT32 (LBA) partition from
    ``FIRST_SECTOR`` to the end of the disk."""
    sectors = disk_bytes // SECTOR - FIRST_SECTOR
    no_chs = b"\xfe\xff\xff"  # CHS unused: the firmware reads the LBA fields
    entry = struct.pack("<B3sB3sII", 0x80, no_chs, FAT32_LBA, no_chs, FIRST_SECTOR, sectors)
    return entry + bytes(48) + b"\x55\xaa"


def syslinux_config(cmdline: str) -> str:
    return (
        "DEFAULT guest\nPROMPT 0\nTIMEOUT 0\nLABEL guest\n  KERNEL vmlinuz\n"
        f"  APPEND initrd=initrd.img {cmdline}\n"
    )


def build_boot_image(
    target: Path, kernel: Path, initrd: Path, cmdline: str, size_mib: int = 64
) -> Path:
    """Write a raw bootable disk image to ``target``; returns ``target``."""
    problem = missing()
    if problem:
        raise ImageUnavailable(f"{problem}: {INSTALL}")
    work = target.parent / f"{target.name}.parts"
    work.mkdir(parents=True, exist_ok=True)
    part = work / "partition.img"
    part.unlink(missing_ok=True)
    (work / "syslinux.cfg").write_text(syslinux_config(cmdline))
    shutil.copyfile(kernel, work / "vmlinuz")
    shutil.copyfile(initrd, work / "initrd.img")
    part_kib = size_mib * 1024 - FIRST_SECTOR * SECTOR // 1024
    _run("mkfs.vfat", "-C", str(part), str(part_kib))
    files = [str(work / name) for name in ("vmlinuz", "initrd.img", "syslinux.cfg")]
    _run("mcopy", "-i", str(part), *files, "::/")
    _run("syslinux", "--install", str(part))
    disk_bytes = size_mib * 2**20
    with target.open("wb") as disk:
        disk.truncate(disk_bytes)
        disk.write(MBR_CODE.read_bytes()[:440])
        disk.seek(446)
        disk.write(partition_table(disk_bytes))
        disk.seek(FIRST_SECTOR * SECTOR)
        with part.open("rb") as source:
            shutil.copyfileobj(source, disk)
    shutil.rmtree(work)
    return target


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ImageUnavailable(f"{' '.join(argv[:2])} failed: {done.stderr.strip()}")


def virt_install_xml(
    name: str,
    image: Path,
    memory_mib: int = 256,
    *,
    heartbeat_log: str = "heartbeat.log",
    data_disk: Path | None = None,
    data_format: str = "raw",
) -> str:
    """A disk-booted VM as ``virt-install`` writes one and libvirt keeps it after define (PCI
    addresses assigned): firmware boot from the first disk, a virtio disk, a pty console on the
    first serial port, VNC graphics, VGA video, a USB tablet, PS/2 mouse and keyboard, USB, PCI
    and virtio-serial controllers, a memory balloon and a guest-agent channel. One addition: a
    second serial port writing to a file, where the busy guest prints its heartbeat (its kernel
    command line says ``vm.hb=ttyS1``), so that a test can read what runs where: a relative
    ``heartbeat_log`` is the domain's ``console.log`` on the QEMU driver, an absolute one must lie
    inside the host's storage roots. ``data_disk``: a second virtio disk, ``vdb``, the guest's
    records go to with ``vm.disk=data`` on its command line."""
    data = ""
    if data_disk is not None:
        data = f"""
    <disk type='file' device='disk'>
      <driver name='qemu' type='{data_format}'/>
      <source file='{data_disk}'/>
      <target dev='vdb' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>
    </disk>"""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='KiB'>{memory_mib * 1024}</memory>
  <currentMemory unit='KiB'>{memory_mib * 1024}</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
    <vmport state='off'/>
  </features>
  <cpu mode='custom' match='exact'>
    <model fallback='forbid'>qemu64</model>
  </cpu>
  <clock offset='utc'>
    <timer name='rtc' tickpolicy='catchup'/>
    <timer name='pit' tickpolicy='delay'/>
    <timer name='hpet' present='no'/>
  </clock>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <pm>
    <suspend-to-mem enabled='no'/>
    <suspend-to-disk enabled='no'/>
  </pm>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{image}'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>
    </disk>{data}
    <controller type='usb' index='0' model='qemu-xhci'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </controller>
    <controller type='pci' index='0' model='pci-root'/>
    <controller type='virtio-serial' index='0'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </controller>
    <serial type='pty'>
      <target type='isa-serial' port='0'>
        <model name='isa-serial'/>
      </target>
    </serial>
    <serial type='file'>
      <source path='{heartbeat_log}'/>
      <target type='isa-serial' port='1'>
        <model name='isa-serial'/>
      </target>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
      <address type='virtio-serial' controller='0' bus='0' port='1'/>
    </channel>
    <input type='tablet' bus='usb'>
      <address type='usb' bus='0' port='1'/>
    </input>
    <input type='mouse' bus='ps2'/>
    <input type='keyboard' bus='ps2'/>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
    <audio id='1' type='none'/>
    <video>
      <model type='vga' vram='16384' heads='1' primary='yes'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>
    </video>
    <memballoon model='virtio'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x06' function='0x0'/>
    </memballoon>
  </devices>
</domain>"""
