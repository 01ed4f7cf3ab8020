"""A small, busy Linux guest for tests and the demo: a distribution kernel and a busybox initramfs.

The guest fills part of its RAM with random data, keeps re-dirtying it at a chosen rate, and prints
a heartbeat ``HB <boot-id> <counter>`` on its serial console about five times a second (``ttyS0``,
or the port ``vm.hb=`` names on the kernel command line). A migration
that loses nothing shows, on the destination's console, the same boot id and a counter that goes on
from the source's last value.

With ``vm.disk=vdb`` (or ``vm.disk=data``: the virtio disk without partitions, whatever the
kernel named it) it also writes record ``REC <boot-id> <counter>`` to 512-byte block
<counter> of that disk each beat (synced), prints ``W <counter>``, and reads back the record of
five beats before from the disk itself (the page cache dropped), printing ``BAD <n> <found>`` on a
mismatch: a storage migration that loses nothing shows the ``W`` counter going on with no gap and
no ``BAD`` line, and leaves every record in the destination's image.
"""

from __future__ import annotations

import glob
import os
import shutil
import stat
from pathlib import Path

#: The kernel modules a guest with ``vm.disk`` loads (in this order) to see its virtio disks.
VIRTIO_MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "virtio_blk",
)
INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
VIRTIO_MODULES="@MODULES@"
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
FILL=0; DIRTY=0; HB=/dev/ttyS0; DISK=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    vm.fill=*) FILL=${arg#vm.fill=};; vm.dirty=*) DIRTY=${arg#vm.dirty=};;
    vm.hb=*) HB=/dev/${arg#vm.hb=};; vm.disk=*) DISK=/dev/${arg#vm.disk=};;
  esac
done
if [ -n "$DISK" ]; then  # the distribution kernel builds virtio disks as modules
  for m in $VIRTIO_MODULES; do [ -f /lib/virtio/$m.ko ] && insmod /lib/virtio/$m.ko; done
fi
if [ "$DISK" = /dev/data ]; then  # the virtio disk without partitions (not the boot disk)
  DISK=
  for d in /sys/block/vd*; do [ -e "$d/${d##*/}1" ] || DISK=/dev/${d##*/}; done
fi
mount -t tmpfs -o size=$((FILL + DIRTY + 8))m tmpfs /mnt
BOOT=$(cat /proc/sys/kernel/random/uuid)
[ "$FILL" -gt 0 ] && dd if=/dev/urandom of=/mnt/fill bs=1M count=$FILL 2>/dev/null
echo "READY $BOOT" > $HB
i=0
while true; do
  i=$((i + 1))
  echo "HB $BOOT $i" > $HB
  if [ -n "$DISK" ]; then
    printf 'REC %s %d\n' $BOOT $i | dd of=$DISK bs=512 seek=$i conv=notrunc,sync,fsync 2>/dev/null \
      && echo "W $i" > $HB
    if [ $i -gt 5 ]; then
      j=$((i - 5)); echo 1 > /proc/sys/vm/drop_caches
      got=$(dd if=$DISK bs=512 skip=$j count=1 2>/dev/null | head -n 1)
      [ "$got" = "REC $BOOT $j" ] || echo "BAD $j $got" > $HB
    fi
  fi
  if [ "$DIRTY" -gt 0 ] && [ $((i % 5)) -eq 0 ]; then
    dd if=/dev/urandom of=/mnt/dirty bs=1M count=$DIRTY conv=notrunc 2>/dev/null
  fi
  sleep 0.2
done
"""


class GuestUnavailable(RuntimeError):
    """The kernel or busybox is missing; the message says what to install."""


def find_kernel() -> Path:
    found = sorted(glob.glob("/boot/vmlinuz-*"))
    if not found:
        raise GuestUnavailable("no kernel in /boot: apt-get install linux-image-cloud-amd64")
    return Path(found[-1])


def _cpio_entry(name: str, mode: int, data: bytes, ino: int) -> bytes:
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
    header = b"070701" + b"".join(f"{v:08X}".encode() for v in fields)
    entry = header + name.encode() + b"\0"
    entry += b"\0" * (-len(entry) % 4) + data
    return entry + b"\0" * (-len(entry) % 4)


def _virtio_modules() -> list[tuple[str, int, bytes]]:
    """The virtio disk modules of the kernel ``find_kernel`` picks, where it has them."""
    try:
        version = find_kernel().name.removeprefix("vmlinuz-")
    except GuestUnavailable:
        return []
    found: list[tuple[str, int, bytes]] = []
    for module in VIRTIO_MODULES:
        paths = glob.glob(f"/lib/modules/{version}/kernel/drivers/*/{module}.ko")
        if paths:
            found.append(
                (f"lib/virtio/{module}.ko", stat.S_IFREG | 0o644, Path(paths[0]).read_bytes())
            )
    if found:
        found[:0] = [("lib", stat.S_IFDIR | 0o755, b""), ("lib/virtio", stat.S_IFDIR | 0o755, b"")]
    return found


def build_initramfs(target: Path) -> Path:
    """Write a newc cpio archive with busybox and the init above; returns ``target``."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox):
        raise GuestUnavailable("busybox is missing: apt-get install busybox-static")
    entries = [
        ("bin", stat.S_IFDIR | 0o755, b""),
        ("dev", stat.S_IFDIR | 0o755, b""),
        ("proc", stat.S_IFDIR | 0o755, b""),
        ("sys", stat.S_IFDIR | 0o755, b""),
        ("mnt", stat.S_IFDIR | 0o755, b""),
        ("bin/busybox", stat.S_IFREG | 0o755, Path(busybox).read_bytes()),
        (
            "init",
            stat.S_IFREG | 0o755,
            INIT.replace("@MODULES@", " ".join(VIRTIO_MODULES)).encode(),
        ),
        *_virtio_modules(),
    ]
    archive = b"".join(_cpio_entry(n, m, d, i + 1) for i, (n, m, d) in enumerate(entries))
    archive += _cpio_entry("TRAILER!!!", 0, b"", 0)
    target.write_bytes(archive)
    return target


def guest_xml(
    name: str,
    kernel: Path,
    initrd: Path,
    *,
    memory_mib: int = 256,
    fill_mib: int = 64,
    dirty_mib: int = 0,
    domain_type: str = "qemu",
    console: str = "console.log",
    network: bool = True,
    disk: str | None = None,
    disk_format: str = "qcow2",
) -> str:
    """The guest's definition. ``console``: the serial console's file (the QEMU driver keeps a
    relative one in the domain's directory; libvirt needs an absolute path). ``network``: a
    user-mode NIC (libvirt daemons on a test bed run without one). ``disk``: a data disk
    (``vdb``) the guest writes its records to."""
    nic = """
    <interface type='user'><mac address='52:54:00:12:34:56'/><model type='virtio'/></interface>"""
    nic = nic if network else ""
    data = ""
    if disk is not None:  # a data disk the guest writes its records to (vm.disk=data)
        data = f"""
    <disk type='file' device='disk'><driver name='qemu' type='{disk_format}'/>
      <source file='{disk}'/><target dev='vdb' bus='virtio'/></disk>"""
    cmdline = f"console=ttyS0 quiet panic=-1 vm.fill={fill_mib} vm.dirty={dirty_mib}"
    cmdline += " vm.disk=data" if disk is not None else ""
    return f"""<domain type='{domain_type}'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <devices>
    <serial type='file'><source path='{console}'/><target port='0'/></serial>{nic}{data}
  </devices>
</domain>"""
