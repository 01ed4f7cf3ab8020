"""Domain documents covering what libvirt's own test suite covers (tests/qemuxml2argvdata and
tests/genericxml2xmlindata, by kind): disks, networks, consoles, graphics, CPUs, NUMA, devices, and
documents libvirt rejects. Written here, not copied: each is a small complete definition.

``VALID``: documents libvirt accepts; a host defines each, or refuses it naming an element it does
not support. ``INVALID``: documents libvirt rejects, each with a fragment of the refusal.
"""

from __future__ import annotations

HEAD = (
    "<name>corpus</name><uuid>c7a3e0a4-1d2b-4f8e-9a51-3c0e7d1f2a44</uuid>"
    "<memory unit='MiB'>256</memory><vcpu>1</vcpu>"
)
OS_BIOS = "<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>"
OS_KERNEL = (
    "<os><type arch='x86_64' machine='pc'>hvm</type><kernel>/boot/vmlinuz</kernel>"
    "<initrd>/boot/initrd.img</initrd><cmdline>console=ttyS0</cmdline></os>"
)


def domain(devices: str = "", extra: str = "", os: str = OS_BIOS, head: str = HEAD) -> str:
    return f"<domain type='qemu'>{head}{os}{extra}<devices>{devices}</devices></domain>"


VALID: dict[str, str] = {
    "minimal-bios": domain(),
    "direct-kernel-boot": domain(os=OS_KERNEL),
    "disk-virtio-qcow2": domain(
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        "<source file='/var/lib/libvirt/images/a.qcow2'/><target dev='vda' bus='virtio'/></disk>"
    ),
    "disk-sata-raw": domain(
        "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
        "<source file='/var/lib/libvirt/images/b.img'/><target dev='sda' bus='sata'/></disk>"
    ),
    "cdrom-ide": domain(
        "<disk type='file' device='cdrom'><source file='/srv/iso/d.iso'/>"
        "<target dev='hdc' bus='ide'/><readonly/></disk>"
    ),
    "disk-block": domain(
        "<disk type='block' device='disk'><source dev='/dev/vg0/lv0'/>"
        "<target dev='vdb' bus='virtio'/></disk>"
    ),
    "net-user-virtio": domain(
        "<interface type='user'><mac address='52:54:00:aa:bb:01'/><model type='virtio'/>"
        "</interface>"
    ),
    "net-network-e1000": domain(
        "<interface type='network'><mac address='52:54:00:aa:bb:02'/>"
        "<source network='default'/><model type='e1000'/></interface>"
    ),
    "net-bridge": domain(
        "<interface type='bridge'><source bridge='br0'/><model type='virtio'/></interface>"
    ),
    "serial-file": domain(
        "<serial type='file'><source path='/var/log/corpus.log'/><target port='0'/></serial>"
    ),
    "serial-pty-console": domain(
        "<serial type='pty'><target port='0'/></serial>"
        "<console type='pty'><target type='serial' port='0'/></console>"
    ),
    "graphics-vnc": domain("<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>"),
    "graphics-spice": domain("<graphics type='spice' autoport='yes'/>"),
    "video-vga": domain("<video><model type='vga' vram='16384' heads='1'/></video>"),
    "input-tablet-usb": domain("<input type='tablet' bus='usb'/>"),
    "controller-usb-pci": domain(
        "<controller type='usb' index='0' model='qemu-xhci'/>"
        "<controller type='pci' index='0' model='pci-root'/>"
    ),
    "memballoon-virtio": domain("<memballoon model='virtio'/>"),
    "channel-guest-agent": domain(
        "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
    ),
    "rng-virtio": domain(
        "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>"
    ),
    "watchdog": domain("<watchdog model='i6300esb' action='reset'/>"),
    "cpu-custom-model": domain(
        extra="<cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model></cpu>"
    ),
    "cpu-topology": domain(
        extra="<cpu><topology sockets='1' dies='1' cores='1' threads='1'/></cpu>"
    ),
    "cpu-host-passthrough": domain(extra="<cpu mode='host-passthrough'/>"),
    "vcpu-cpuset": domain(
        head=HEAD.replace("<vcpu>1</vcpu>", "<vcpu placement='static' cpuset='0-1,^1'>1</vcpu>")
    ),
    "numa-cells": domain(
        extra="<cpu><numa><cell id='0' cpus='0' memory='262144' unit='KiB'/></numa></cpu>"
    ),
    "features-clock-lifecycle": domain(
        extra="<features><acpi/><apic/></features><clock offset='utc'/>"
        "<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot>"
        "<on_crash>coredump-destroy</on_crash>"
    ),
    "hostdev-pci": domain(
        "<hostdev mode='subsystem' type='pci' managed='yes'><source>"
        "<address domain='0x0000' bus='0x00' slot='0x1f' function='0x0'/></source></hostdev>"
    ),
    "filesystem-9p": domain(
        "<filesystem type='mount' accessmode='passthrough'><source dir='/srv/share'/>"
        "<target dir='share'/></filesystem>"
    ),
    "sound-ich9": domain("<sound model='ich9'/>"),
    "title-description-metadata": domain(
        extra="<title>a title</title><description>words</description>"
        "<metadata><app:x xmlns:app='urn:example:app'>1</app:x></metadata>"
    ),
}

INVALID: dict[str, tuple[str, str]] = {
    "wrong-root": ("<domian type='qemu'>" + HEAD + "</domian>", "root element must be <domain>"),
    "unknown-type": (
        f"<domain type='bhyve-ish'>{HEAD}{OS_BIOS}</domain>",
        "domain type must be one of",
    ),
    "no-name": (
        "<domain type='qemu'><memory unit='MiB'>256</memory>" + OS_BIOS + "</domain>",
        "no <name>",
    ),
    "bad-uuid": (domain(head=HEAD.replace("c7a3e0a4-1d2b", "not-a-uuid")), "invalid uuid"),
    "no-memory": (
        "<domain type='qemu'><name>corpus</name><uuid>c7a3e0a4-1d2b-4f8e-9a51-3c0e7d1f2a44</uuid>"
        + OS_BIOS
        + "</domain>",
        "no <memory>",
    ),
    "zero-memory": (domain(head=HEAD.replace(">256<", ">0<")), "memory must be positive"),
    "bad-memory-unit": (domain(head=HEAD.replace("MiB", "parsecs")), "unknown memory unit"),
    "vcpu-zero": (domain(head=HEAD.replace("<vcpu>1</vcpu>", "<vcpu>0</vcpu>")), "vcpu count"),
    "cpuset-garbage": (
        domain(head=HEAD.replace("<vcpu>1</vcpu>", "<vcpu cpuset='0-a'>1</vcpu>")),
        "invalid cpuset",
    ),
    "cpuset-descending": (
        domain(head=HEAD.replace("<vcpu>1</vcpu>", "<vcpu cpuset='3-1'>1</vcpu>")),
        "invalid cpuset",
    ),
    "disk-without-target": (
        domain("<disk type='file' device='disk'><source file='/x.img'/></disk>"),
        "has no <target",
    ),
    "two-disks-one-target": (
        domain(
            "<disk type='file' device='disk'><source file='/a.img'/><target dev='vda'/></disk>"
            "<disk type='file' device='disk'><source file='/b.img'/><target dev='vda'/></disk>"
        ),
        "two disks have the target",
    ),
    "mac-malformed": (
        domain("<interface type='user'><mac address='52:54:00:zz:00:01'/></interface>"),
        "invalid MAC address",
    ),
    "mac-multicast": (
        domain("<interface type='user'><mac address='01:00:5e:00:00:01'/></interface>"),
        "multicast",
    ),
    "current-memory-above-memory": (
        domain(extra="<currentMemory unit='MiB'>512</currentMemory>"),
        "<currentMemory> must not exceed <memory>",
    ),
    "lifecycle-unknown-action": (
        domain(extra="<on_reboot>explode</on_reboot>"),
        "invalid <on_reboot> action",
    ),
    "numa-bad-cpus": (
        domain(extra="<cpu><numa><cell id='0' cpus='x' memory='262144'/></numa></cpu>"),
        "invalid cpus",
    ),
}

#: Refused only by libvirt's schema (hosts without libvirt accept them): the schema is the check.
SCHEMA_ONLY: dict[str, tuple[str, str]] = {
    "unknown-device": (domain("<teleporter/>"), "libvirt's schema"),
    "graphics-without-type": (domain("<graphics/>"), "libvirt's schema"),
    "interface-without-type": (domain("<interface><model type='virtio'/></interface>"), "schema"),
    "os-type-garbage": (domain(os="<os><type>paravirt-ish</type></os>"), "libvirt's schema"),
    "controller-unknown-type": (domain("<controller type='warp' index='0'/>"), "schema"),
}
