"""Domain XML -> QEMU command line: a pure function over a documented subset of libvirt's XML.

Supported: ``<domain type='kvm'|'qemu'>`` with name, uuid, memory/currentMemory, vcpu,
``<os>`` (type with arch x86_64 and a machine; a kernel, initrd and cmdline, or firmware boot in
``<boot>`` order), ``<cpu>`` (a model, or host-passthrough with kvm), features acpi/apic/vmport,
on_* actions, clock and pm, ``<devices>`` with file-backed disks (raw, qcow2; virtio or SATA),
serial ports to a file or a pty, network interfaces of type user (virtio or e1000, with a MAC),
and the devices of an ordinary VM (workers/drivers/qemu/devices.py: controllers, a guest-agent
channel, a USB tablet, VNC, video, a balloon). Anything else is refused with an error naming the
element, never silently dropped. The same XML always gives the same command line, so a source and a
destination build matching machines; only the run-time paths and ``-incoming`` differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from workers import domxml, safexml
from workers.drivers.qemu import devices
from workers.drivers.qemu.devices import Unsupported

__all__ = ["Paths", "Unsupported", "build_command", "validate"]

QEMU_BINARY = "qemu-system-x86_64"
ALLOWED = {
    "domain": {
        "name",
        "uuid",
        "title",
        "description",
        "memory",
        "currentMemory",
        "vcpu",
        "os",
        "cpu",
        "features",
        "on_poweroff",
        "on_reboot",
        "on_crash",
        "devices",
        "metadata",
        "clock",
        "pm",
    },
    "os": {"type", "kernel", "initrd", "cmdline", "boot"},
    "cpu": {"model"},
    "features": {"acpi", "apic", "vmport"},
    "devices": {
        "disk",
        "serial",
        "console",
        "interface",
        "emulator",
        "controller",
        "channel",
        "input",
        "graphics",
        "video",
        "memballoon",
        "audio",
    },
    "disk": {"driver", "source", "target", "serial", "readonly", "address"},
    "serial": {"source", "target"},
    "console": {"target"},
    "interface": {"mac", "model", "address"},
    "controller": {"address", "model"},
    "channel": {"source", "target", "address"},
    "input": {"address"},
    "graphics": {"listen"},
    "video": {"model", "address"},
    "memballoon": {"address", "stats"},
    "clock": {"timer"},
    "pm": {"suspend-to-mem", "suspend-to-disk"},
}
#: Devices that sit on the PCI bus (explicitly addressed all, or none).
PCI_DEVICES = ("disk", "interface", "controller", "video", "memballoon")
NIC_MODELS = {"virtio": "virtio-net-pci", "e1000": "e1000"}


@dataclass(frozen=True)
class Paths:
    """Where one running QEMU keeps its files (they differ between hosts)."""

    run_dir: Path
    state_dir: Path

    @property
    def qmp(self) -> Path:
        return self.run_dir / "qmp.sock"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "qemu.pid"


def _escape(value: str) -> str:
    """QEMU option values: a comma is written twice."""
    if "\n" in value or "\0" in value:
        raise Unsupported("paths and values must not contain newlines")
    return value.replace(",", ",,")


def _check(element: etree._Element, path: str) -> None:
    allowed = ALLOWED.get(str(element.tag))
    for child in element:
        tag = str(child.tag)
        if allowed is not None and tag not in allowed:
            raise Unsupported(
                f"unsupported element <{path}/{tag}>: the QEMU driver does not "
                f"handle it (see docs/qemu-driver.md)"
            )
        if tag in ALLOWED and tag != "metadata":
            _check(child, f"{path}/{tag}")


def validate(xml: str) -> domxml.Domain:
    """Parse ``xml`` and refuse anything outside the supported subset, naming the element."""
    dom, root = _checked(xml)
    _devices(root, Paths(Path("/run"), Path("/state")))  # each device's own checks
    devices.clock_and_pm(root)
    devices.boot_order(root)
    return dom


def _checked(xml: str) -> tuple[domxml.Domain, etree._Element]:
    """The parsed definition and its root, with the subset's element checks done (the devices
    check themselves as their options are built)."""
    dom = domxml.parse_domain(xml)
    root = safexml.parse(dom.xml, "domain XML")
    _check(root, "domain")
    os_type = root.find("os/type")
    if os_type is None or (os_type.text or "").strip() != "hvm":
        raise Unsupported("<os><type> must be 'hvm'")
    if os_type.get("arch", "x86_64") != "x86_64":
        raise Unsupported(f"unsupported <os><type arch='{os_type.get('arch')}'>: only x86_64")
    for disk in root.findall("devices/disk"):
        if disk.get("type") != "file" or disk.get("device", "disk") != "disk":
            raise Unsupported("only <disk type='file' device='disk'> is supported")
        driver = disk.find("driver")
        if driver is not None and driver.get("type", "raw") not in ("raw", "qcow2"):
            raise Unsupported(f"unsupported disk format {driver.get('type')!r}: raw or qcow2")
    for nic in root.findall("devices/interface"):
        model = nic.find("model")
        if nic.get("type") != "user" or (model is not None and model.get("type") not in NIC_MODELS):
            raise Unsupported(
                "only <interface type='user'> with model virtio or e1000 is supported"
            )
    for audio in root.findall("devices/audio"):
        if audio.get("type") != "none":
            raise Unsupported(f"unsupported <audio type='{audio.get('type')}'>: only none")
    _check_pci_addresses(root)
    return dom, root


def _check_pci_addresses(root: etree._Element) -> None:
    """Either every PCI device names its slot or none does: QEMU gives a device without one the
    first free slot in command-line order, which a later explicit address may then collide with."""
    found = [
        e.find("address") is not None
        for tag in PCI_DEVICES
        for e in root.findall(f"devices/{tag}")
        if not (tag == "controller" and e.get("type") == "pci")
    ]
    if any(found) and not all(found):
        raise Unsupported(
            "either every PCI device has an <address type='pci'> or none does (as libvirt "
            "writes them after define)"
        )
    for kind in devices.IMPLIED_CONTROLLERS:
        if any(found) and devices.implied_controller_missing(root, kind):
            raise Unsupported(
                f"a definition with PCI addresses must list its <controller type='{kind}'> "
                "with one (libvirt adds it at define)"
            )


def _cpu(root: etree._Element, accel: str) -> list[str]:
    cpu = root.find("cpu")
    if cpu is None:
        return []
    if cpu.get("mode") == "host-passthrough":
        if accel != "kvm":
            raise Unsupported("<cpu mode='host-passthrough'> needs domain type kvm")
        return ["-cpu", "host"]
    model = (cpu.findtext("model") or "").strip()
    return ["-cpu", _escape(model)] if model else []


def _devices(root: etree._Element, paths: Paths) -> list[str]:
    args = devices.controllers(root)
    sata_units = 0
    for index, disk in enumerate(root.findall("devices/disk")):
        source = disk.find("source")
        target = disk.find("target")
        if source is None or not source.get("file") or target is None:
            raise Unsupported("a <disk> needs <source file=...> and <target dev=...>")
        driver = disk.find("driver")
        fmt = "raw" if driver is None else driver.get("type", "raw")
        ident = _escape(target.get("dev", f"vd{index}"))
        boot = devices.boot_index(root, "hd") if index == 0 else ""
        args += [
            *devices.disk_nodes(
                source.get("file", ""), fmt, ident, disk.find("readonly") is not None
            ),
            "-device",
            devices.disk_device(disk, ident, sata_units, boot),
        ]
        sata_units += target.get("bus") == "sata"
    for index, nic in enumerate(root.findall("devices/interface")):
        model = nic.find("model")
        device = NIC_MODELS[model.get("type", "virtio") if model is not None else "virtio"]
        mac = nic.find("mac")
        mac_opt = f",mac={_escape(mac.get('address', ''))}" if mac is not None else ""
        boot = devices.boot_index(root, "network") if index == 0 else ""
        args += [
            "-netdev",
            f"user,id=net{index}",
            "-device",
            f"{device},netdev=net{index}{mac_opt}{devices.pci_address(nic)}{boot}",
        ]
    args += devices.serials(root, paths.state_dir, _escape)
    args += devices.channels(root, paths.run_dir, _escape)
    args += devices.inputs(root)
    args += devices.graphics(root)
    args += devices.video(root)
    args += devices.memballoon(root)
    return args


def _machine_extras(root: etree._Element) -> str:
    """libvirt's extra -machine options, only for definitions that use the wider subset, so
    that a direct-kernel-boot guest keeps the command line earlier releases gave it (and can
    migrate between them)."""
    wider = root.find("os/kernel") is None or root.find("features/vmport") is not None
    return devices.machine_options(root) if wider else ""


def build_command(xml: str, paths: Paths, incoming: bool = False) -> list[str]:
    """The QEMU argv for ``xml``; ``incoming`` waits for a migration (``-incoming defer``)."""
    dom, root = _checked(xml)
    accel = "kvm" if dom.type == "kvm" else "tcg"
    machine = root.find("os/type").get("machine", "pc")  # type: ignore[union-attr]
    args = [
        QEMU_BINARY,
        "-name",
        f"guest={dom.name}",
        "-uuid",
        dom.uuid,
        "-machine",
        f"{_escape(machine)},accel={accel}{_machine_extras(root)}",
        *_cpu(root, accel),
        "-m",
        f"{dom.memory_kib // 1024}M",
        "-smp",
        str(dom.vcpus),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        *devices.clock_and_pm(root),
    ]
    if root.findtext("os/kernel"):
        args += ["-kernel", _escape(root.findtext("os/kernel", "").strip())]
    else:  # firmware boot, in the order of <os><boot> (libvirt's per-device boot indexes)
        args += ["-boot", "strict=on"]
    if root.findtext("os/initrd"):
        args += ["-initrd", _escape(root.findtext("os/initrd", "").strip())]
    if root.findtext("os/cmdline"):
        args += ["-append", root.findtext("os/cmdline", "").strip()]
    args += _devices(root, paths)
    args += [
        "-qmp",
        f"unix:{_escape(str(paths.qmp))},server=on,wait=off",
        "-pidfile",
        _escape(str(paths.pidfile)),
        "-daemonize",
        "-S",
    ]
    if incoming:
        args += ["-incoming", "defer"]
    return args
