"""Each element of an ordinary VM definition, mapped to the QEMU options libvirt 9.0 gives it.

The expected options are those of ``virsh domxml-to-native qemu-argv`` on libvirt 9.0 for the
same XML (vmigrate/disk_image.py's ``virt_install_xml``), in QEMU's ``key=value`` form; where
vmigrate differs on purpose (the console file, sockets in the QEMU's run directory, VNC's free
display), the test says so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vmigrate.disk_image import virt_install_xml
from workers.drivers.qemu import devices
from workers.drivers.qemu.cmdline import Paths, Unsupported, build_command, validate
from workers.safexml import parse

UUID = "3f2d1c4b-5a69-4e7d-8c1b-2a3f4e5d6c7b"
PATHS = Paths(Path("/run/vi"), Path("/state/vi"))
VI = virt_install_xml("vi", Path("/images/vi.img")).replace(
    "<name>vi</name>", f"<name>vi</name><uuid>{UUID}</uuid>"
)
ARGV = build_command(VI, PATHS)
ROOT = parse(VI)


def option(name: str) -> list[str]:
    """Every value that follows ``name`` on the command line."""
    return [ARGV[i + 1] for i, arg in enumerate(ARGV) if arg == name]


def test_firmware_boot_from_the_first_disk_is_a_strict_boot_index():
    assert "-kernel" not in ARGV and option("-boot") == ["strict=on"]
    assert "virtio-blk-pci,drive=drive-vda,id=vda,bus=pci.0,addr=0x5,bootindex=1" in ARGV


def test_the_machine_keeps_usb_and_vmport_off():
    assert option("-machine") == ["pc-i440fx-7.2,accel=tcg,usb=off,vmport=off"]


def test_clock_timers_and_power_management():
    assert option("-rtc") == ["base=utc,driftfix=slew"]
    assert "-no-hpet" in ARGV
    assert option("-global") == [
        "kvm-pit.lost_tick_policy=delay",
        "PIIX4_PM.disable_s3=1",
        "PIIX4_PM.disable_s4=1",
    ]


def test_controllers_at_their_pci_slots():
    assert "qemu-xhci,id=usb,bus=pci.0,addr=0x3" in option("-device")
    assert "virtio-serial-pci,id=virtio-serial0,bus=pci.0,addr=0x4" in option("-device")


def test_the_pty_console_and_a_file_serial_port_in_port_order():
    assert option("-chardev")[:2] == [
        "pty,id=serial0",
        "file,id=serial1,path=/state/vi/console.log,append=on",  # relative: the domain's file
    ]
    assert option("-serial") == ["chardev:serial0", "chardev:serial1"]


def test_an_absolute_console_path_is_the_file_qemu_writes_as_libvirt_does():
    xml = VI.replace("'heartbeat.log'", "'/images/consoles/vi.log'")
    chardevs = [a for a in build_command(xml, PATHS) if a.startswith("file,")]
    assert chardevs == ["file,id=serial1,path=/images/consoles/vi.log,append=on"]


def test_the_guest_agent_channel_is_a_socket_on_the_virtio_serial_port():
    assert "socket,id=charchannel0,path=/run/vi/channel0.sock,server=on,wait=off" in option(
        "-chardev"
    )
    assert (
        "virtserialport,bus=virtio-serial0.0,nr=1,chardev=charchannel0,id=channel0,"
        "name=org.qemu.guest_agent.0" in option("-device")
    )


def test_a_usb_tablet_and_the_machines_own_ps2_mouse_and_keyboard():
    assert "usb-tablet,id=input0,bus=usb.0,port=1" in option("-device")
    assert not [d for d in option("-device") if "ps2" in d or "kbd" in d]


def test_vnc_on_the_listen_address_with_the_first_free_display_and_no_audio():
    assert option("-audiodev") == ["id=audio1,driver=none"]
    assert option("-vnc") == ["127.0.0.1:0,to=99,audiodev=audio1"]  # libvirt picks the port


def test_vga_video_and_the_balloon_at_their_slots():
    assert "VGA,id=video0,vgamem_mb=16,bus=pci.0,addr=0x2" in option("-device")
    assert "virtio-balloon-pci,id=balloon0,bus=pci.0,addr=0x6" in option("-device")


def test_a_fixed_vnc_port_and_other_models():
    vnc = parse(
        "<domain><devices><graphics type='vnc' port='5905' autoport='no'/></devices></domain>"
    )
    assert devices.graphics(vnc)[-1] == "127.0.0.1:5,audiodev=audio1"
    virtio = parse("<domain><devices><video><model type='virtio'/></video></devices></domain>")
    assert devices.video(virtio) == ["-device", "virtio-vga,id=video0"]
    none = parse("<domain><devices><memballoon model='none'/></devices></domain>")
    assert devices.memballoon(none) == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (("<graphics type='vnc'", "<graphics type='spice'"), "graphics type='vnc'"),
        (("model='qemu-xhci'", "model='ich9-ehci1'"), "USB controller model"),
        (("bus='virtio'/>", "bus='scsi'/>"), "disk bus"),
        (("bus='virtio'/>", "bus='sata'/>"), "controller type='sata'"),
        (("<input type='tablet' bus='usb'>", "<input type='tablet' bus='virtio'>"), "<input"),
        (("<serial type='pty'>", "<serial type='tcp'>"), "serial type"),
        (("<audio id='1' type='none'/>", "<audio id='1' type='pulseaudio'/>"), "audio"),
        (("bus='0x00' slot='0x06'", "bus='0x01' slot='0x06'"), "bus 0"),
    ],
)
def test_what_stays_outside_is_refused_naming_it(change, named):
    with pytest.raises(Unsupported, match=named):
        validate(VI.replace(*change))


def test_pci_addresses_are_all_or_nothing():
    half = VI.replace(
        "<address type='pci' domain='0x0000' bus='0x00' slot='0x06' function='0x0'/>", ""
    )
    with pytest.raises(Unsupported, match="every PCI device"):
        validate(half)


def test_the_same_definition_builds_the_same_machine_on_every_host():
    other = build_command(VI, Paths(Path("/elsewhere/run"), Path("/elsewhere/state")))
    differ = [(a, b) for a, b in zip(ARGV, other, strict=True) if a != b]
    assert all("/elsewhere/" in b for _, b in differ), differ  # only this host's own paths
    assert ROOT.findtext("os/boot") is not None or ROOT.find("os/boot") is not None


def test_a_sata_disk_is_an_ahci_drive_with_the_controller_libvirt_adds():
    sata = VI.replace("bus='virtio'/>", "bus='sata'/>").replace("dev='vda'", "dev='sda'")
    sata = sata.replace(
        "<controller type='pci' index='0' model='pci-root'/>",
        "<controller type='pci' index='0' model='pci-root'/><controller type='sata' index='0'>"
        "<address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/></controller>",
    )
    argv = build_command(sata, PATHS)
    assert "ahci,id=sata0,bus=pci.0,addr=0x7" in argv
    assert "ide-hd,bus=sata0.0,drive=drive-sda,id=sda,bootindex=1" in argv
    bare = parse(
        "<domain><devices><disk type='file'><target dev='sda' bus='sata'/></disk></devices></domain>"
    )
    assert devices.controllers(bare) == ["-device", "ahci,id=sata0"]
