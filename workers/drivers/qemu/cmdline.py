"""Domain XML -> QEMU command line: a pure function over a documented subset of libvirt's XML.

Supported: ``<domain type='kvm'|'qemu'>`` with name, uuid, memory/currentMemory, vcpu,
``<os>`` (type with arch x86_64 and a machine, kernel, initrd, cmdline), ``<cpu>`` (a model, or
host-passthrough with kvm), features acpi/apic, on_* actions, ``<devices>`` with file-backed
disks (raw, qcow2; virtio), one serial console to a file, network interfaces of type user (virtio or
e1000, with a MAC), and no graphics. Anything else is refused with an error naming the element,
never silently dropped. The same XML always gives the same command line, so a source and a
destination build matching machines; only the run-time paths and ``-incoming`` differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from workers import domxml, safexml

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
    },
    "os": {"type", "kernel", "initrd", "cmdline"},
    "cpu": {"model"},
    "features": {"acpi", "apic"},
    "devices": {"disk", "serial", "interface", "emulator"},
    "disk": {"driver", "source", "target", "serial", "readonly"},
    "serial": {"source", "target"},
    "interface": {"mac", "model"},
}
NIC_MODELS = {"virtio": "virtio-net-pci", "e1000": "e1000"}


class Unsupported(ValueError):
    code = "UNSUPPORTED_XML"


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
    dom = domxml.parse_domain(xml)
    root = safexml.parse(dom.xml, "domain XML")
    _check(root, "domain")
    os_type = root.find("os/type")
    if os_type is None or (os_type.text or "").strip() != "hvm":
        raise Unsupported("<os><type> must be 'hvm'")
    if os_type.get("arch", "x86_64") != "x86_64":
        raise Unsupported(f"unsupported <os><type arch='{os_type.get('arch')}'>: only x86_64")
    if root.find("os/kernel") is None:
        raise Unsupported("<os><kernel> is required (direct kernel boot)")
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
    if len(root.findall("devices/serial")) > 1:
        raise Unsupported("at most one <serial> console is supported")
    for serial in root.findall("devices/serial"):
        if serial.get("type") != "file":
            raise Unsupported("only <serial type='file'> is supported")
    return dom


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
    args: list[str] = []
    for index, disk in enumerate(root.findall("devices/disk")):
        source = disk.find("source")
        target = disk.find("target")
        if source is None or not source.get("file") or target is None:
            raise Unsupported("a <disk> needs <source file=...> and <target dev=...>")
        driver = disk.find("driver")
        fmt = "raw" if driver is None else driver.get("type", "raw")
        ident = _escape(target.get("dev", f"vd{index}"))
        readonly = ",readonly=on" if disk.find("readonly") is not None else ""
        args += [
            "-drive",
            f"file={_escape(source.get('file', ''))},format={fmt},if=none,"
            f"id=drive-{ident}{readonly}",
            "-device",
            f"virtio-blk-pci,drive=drive-{ident},id={ident}",
        ]
    for index, nic in enumerate(root.findall("devices/interface")):
        model = nic.find("model")
        device = NIC_MODELS[model.get("type", "virtio") if model is not None else "virtio"]
        mac = nic.find("mac")
        mac_opt = f",mac={_escape(mac.get('address', ''))}" if mac is not None else ""
        args += [
            "-netdev",
            f"user,id=net{index}",
            "-device",
            f"{device},netdev=net{index}{mac_opt}",
        ]
    if root.find("devices/serial") is not None:
        console = paths.state_dir / "console.log"
        args += [
            "-chardev",
            f"file,id=serial0,path={_escape(str(console))},append=on",
            "-serial",
            "chardev:serial0",
        ]
    return args


def build_command(xml: str, paths: Paths, incoming: bool = False) -> list[str]:
    """The QEMU argv for ``xml``; ``incoming`` waits for a migration (``-incoming defer``)."""
    dom = validate(xml)
    root = safexml.parse(dom.xml, "domain XML")
    accel = "kvm" if dom.type == "kvm" else "tcg"
    machine = root.find("os/type").get("machine", "pc")  # type: ignore[union-attr]
    args = [
        QEMU_BINARY,
        "-name",
        f"guest={dom.name}",
        "-uuid",
        dom.uuid,
        "-machine",
        f"{_escape(machine)},accel={accel}",
        *_cpu(root, accel),
        "-m",
        f"{dom.memory_kib // 1024}M",
        "-smp",
        str(dom.vcpus),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-kernel",
        _escape(root.findtext("os/kernel", "").strip()),
    ]
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
