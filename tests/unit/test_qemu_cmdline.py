"""Domain XML -> QEMU command line: deterministic, complete for the subset, loud outside it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workers.drivers.qemu.cmdline import Paths, Unsupported, build_command

UUID = "6f1c1bde-1f4e-4a7c-9e1e-2b8d2a0c5d11"
PATHS = Paths(Path("/run/vm/web"), Path("/var/lib/vm/web"))


def xml(devices: str = "", extra: str = "", kind: str = "qemu", os_extra: str = "") -> str:
    return f"""<domain type='{kind}'><name>web</name><uuid>{UUID}</uuid><memory unit='MiB'>512</memory>
<vcpu>2</vcpu><os><type arch='x86_64' machine='q35'>hvm</type><kernel>/boot/vmlinuz</kernel>
<initrd>/boot/initrd</initrd><cmdline>console=ttyS0</cmdline>{os_extra}</os>{extra}
<devices>{devices}</devices></domain>"""


FULL = xml(
    devices="""<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='/images/web,1.qcow2'/><target dev='vda' bus='virtio'/></disk>
<interface type='user'><mac address='52:54:00:00:00:01'/><model type='virtio'/></interface>
<serial type='file'><source path='console.log'/><target port='0'/></serial>""",
    extra="<cpu mode='custom'><model>Nehalem</model></cpu>",
)


def test_the_same_xml_always_gives_the_same_command_line():
    first = build_command(FULL, PATHS)
    assert first == build_command(FULL, PATHS)
    joined = " ".join(first)
    for piece in (
        "-name guest=web",
        f"-uuid {UUID}",
        "-machine q35,accel=tcg",
        "-cpu Nehalem",
        "-m 512M",
        "-smp 2",
        "-kernel /boot/vmlinuz",
        "-initrd /boot/initrd",
        "-append console=ttyS0",
        '{"driver":"file","filename":"/images/web,1.qcow2","node-name":"file-vda"}',
        '{"node-name":"drive-vda","driver":"qcow2","file":"file-vda"}',
        "virtio-blk-pci,drive=drive-vda,id=vda",
        "virtio-net-pci,netdev=net0,mac=52:54:00:00:00:01",
        "-qmp unix:/run/vm/web/qmp.sock,server=on,wait=off",
        "-daemonize",
        "-S",
    ):
        assert piece in joined, piece
    assert "-incoming" not in first


def test_incoming_and_kvm():
    assert build_command(FULL, PATHS, incoming=True)[-2:] == ["-incoming", "defer"]
    assert "accel=kvm" in " ".join(build_command(xml(kind="kvm"), PATHS))


@pytest.mark.parametrize(
    ("document", "named"),
    [
        (
            xml(devices="<smartcard mode='passthrough' type='spicevmc'/>"),
            "<domain/devices/smartcard>",
        ),
        (xml(extra="<numatune/>"), "<domain/numatune>"),
        (
            xml(
                devices="<hostdev mode='subsystem' type='pci'><source><address domain='0x0000' "
                "bus='0x00' slot='0x1f' function='0x0'/></source></hostdev>"
            ),
            "<domain/devices/hostdev>",
        ),
        (xml(os_extra="<loader>/ovmf.fd</loader>"), "<domain/os/loader>"),
        (
            xml(devices="<interface type='bridge'><source bridge='br0'/></interface>"),
            "<domain/devices/interface/source>",
        ),
        (xml(devices="<interface type='bridge'/>"), "interface type='user'"),
        (
            xml(
                devices="<disk type='block' device='disk'><source dev='/dev/sdb'/>"
                "<target dev='vdb'/></disk>"
            ),
            "disk type='file'",
        ),
        (
            xml(
                devices="<disk type='file'><driver type='vmdk'/><source file='/a'/><target dev='vda'/></disk>"
            ),
            "vmdk",
        ),
        (xml(extra="<cpu mode='host-passthrough'/>"), "needs domain type kvm"),
    ],
)
def test_anything_outside_the_subset_is_refused_by_name(document, named):
    with pytest.raises(Unsupported) as refused:
        build_command(document, PATHS)
    assert named in str(refused.value)


def test_without_a_kernel_the_firmware_boots_the_first_disk_as_libvirt_does():
    disk = "<disk type='file' device='disk'><source file='/d.img'/><target dev='vda'/></disk>"
    argv = build_command(xml(devices=disk).replace("<kernel>/boot/vmlinuz</kernel>", ""), PATHS)
    assert "-kernel" not in argv and argv[argv.index("-boot") + 1] == "strict=on"
    assert "virtio-blk-pci,drive=drive-vda,id=vda,bootindex=1" in argv


def test_a_kvm_guest_that_cannot_boot_here_is_refused_with_the_reason(monkeypatch, tmp_path):
    from workers.drivers.qemu import process

    monkeypatch.delenv("VMIGRATE_ALLOW_PVM", raising=False)
    if os.access("/dev/kvm", os.R_OK | os.W_OK) and not process.PVM_MODULE.exists():
        pytest.skip("this machine has a /dev/kvm that boots stock guests: nothing to refuse")
    with pytest.raises(process.QemuStartFailed) as refused:
        process.start(
            ["qemu-system-x86_64", "-never-run"], Paths(tmp_path, tmp_path), accel_kvm=True
        )
    assert "use domain type 'qemu'" in str(refused.value)
