"""The devices of an ordinary VM definition, each mapped to the QEMU options libvirt 9.0 gives it.

What ``virt-install`` writes for a disk-booted VM: firmware boot order, virtio disks, serial ports
(a file or a pty) and the console on the first, VNC graphics, video, USB tablet, PS/2 mouse and
keyboard, USB, PCI and virtio-serial controllers, a memory balloon, a guest-agent channel, clock
timers and power-management switches. The options are the ones libvirt 9.0 puts on QEMU's
command line for the same XML (``virsh domxml-to-native qemu-argv``), written in QEMU's
``key=value`` form. A ``<address type='pci'>`` is honoured (``bus=pci.0,addr=SLOT``); without
one QEMU assigns the slot in command-line order, the same on every host because the command line
is a pure function of the XML. Pure functions over the parsed definition.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from lxml import etree

Element = etree._Element
EscapeFn = Callable[[str], str]

USB_MODELS = {"qemu-xhci": "qemu-xhci", "nec-xhci": "nec-usb-xhci", "piix3-uhci": "piix3-usb-uhci"}
VIDEO_MODELS = {
    "vga": "VGA",
    "cirrus": "cirrus-vga",
    "virtio": "virtio-vga",
    "bochs": "bochs-display",
}
GUEST_AGENT = "org.qemu.guest_agent.0"


class Unsupported(ValueError):
    """Outside the QEMU driver's subset; the message names what."""

    code = "UNSUPPORTED_XML"


def pci_address(element: Element) -> str:
    """``,bus=pci.0,addr=0xN`` for an explicit PCI address on bus 0, function 0; else ''."""
    address = element.find("address")
    if address is None or address.get("type") != "pci":
        return ""
    bus, function = int(address.get("bus", "0"), 0), int(address.get("function", "0"), 0)
    if bus != 0 or function != 0 or int(address.get("domain", "0"), 0) != 0:
        raise Unsupported("only PCI addresses on bus 0, function 0 are supported")
    return f",bus=pci.0,addr={int(address.get('slot', '0'), 0):#x}"


def boot_order(root: Element) -> list[str]:
    """``<os><boot dev=...>`` in order; without any, libvirt boots the disk (unless a kernel is
    booted directly)."""
    devs = [b.get("dev", "") for b in root.findall("os/boot")]
    if not devs and root.find("os/kernel") is None:
        return ["hd"]
    for dev in devs:
        if dev not in ("hd", "network"):
            raise Unsupported(f"unsupported <os><boot dev='{dev}'>: hd or network")
    return devs


def boot_index(root: Element, dev: str) -> str:
    """``,bootindex=N`` for the first device of ``dev``'s kind, as libvirt converts the legacy
    ``<os><boot>`` order into per-device boot indexes."""
    order = boot_order(root)
    return f",bootindex={order.index(dev) + 1}" if dev in order else ""


def machine_options(root: Element) -> str:
    """Extra ``-machine`` options: ``usb=off`` (libvirt adds controllers itself), vmport."""
    options = ",usb=off"
    vmport = root.find("features/vmport")
    if vmport is not None:
        options += f",vmport={'on' if vmport.get('state') == 'on' else 'off'}"
    return options


def clock_and_pm(root: Element) -> list[str]:
    """``<clock>`` timers and ``<pm>`` suspend switches."""
    args: list[str] = []
    clock = root.find("clock")
    if clock is not None:
        offset = clock.get("offset", "utc")
        if offset not in ("utc", "localtime"):
            raise Unsupported(f"unsupported <clock offset='{offset}'>: utc or localtime")
        rtc = f"base={offset}"
        for timer in clock.findall("timer"):
            name, policy = timer.get("name"), timer.get("tickpolicy")
            if name == "rtc" and policy == "catchup":
                rtc += ",driftfix=slew"
            elif name == "pit" and policy == "delay":
                args += ["-global", "kvm-pit.lost_tick_policy=delay"]
            elif name == "hpet" and timer.get("present") == "no":
                args += ["-no-hpet"]
        args = ["-rtc", rtc, *args]
    for tag, flag in (("suspend-to-mem", "disable_s3"), ("suspend-to-disk", "disable_s4")):
        switch = root.find(f"pm/{tag}")
        if switch is not None and switch.get("enabled") == "no":
            args += ["-global", f"PIIX4_PM.{flag}=1"]
    return args


def controllers(root: Element) -> list[str]:
    args: list[str] = []
    for controller in root.findall("devices/controller"):
        kind, model = controller.get("type"), controller.get("model", "")
        if kind == "pci" and model in ("pci-root", ""):
            continue  # the machine's own
        if kind == "usb":
            if model == "none":
                continue
            if model not in USB_MODELS:
                raise Unsupported(f"unsupported USB controller model {model!r}")
            args += ["-device", f"{USB_MODELS[model]},id=usb{pci_address(controller)}"]
        elif kind == "virtio-serial":
            args += ["-device", f"virtio-serial-pci,id=virtio-serial0{pci_address(controller)}"]
        elif kind == "sata":
            args += ["-device", f"ahci,id=sata0{pci_address(controller)}"]
        else:
            raise Unsupported(f"unsupported <controller type='{kind}' model='{model}'>")
    for kind, device in IMPLIED_CONTROLLERS.items():
        if implied_controller_missing(root, kind):
            args += ["-device", device]  # libvirt adds the controller too
    return args


#: Controllers a device needs, which libvirt adds to the definition when it lacks them.
IMPLIED_CONTROLLERS = {
    "virtio-serial": "virtio-serial-pci,id=virtio-serial0",
    "sata": "ahci,id=sata0",
}


def implied_controller_missing(root: Element, kind: str) -> bool:
    """A device needs a controller of ``kind`` that the definition does not list."""
    if any(c.get("type") == kind for c in root.findall("devices/controller")):
        return False
    if kind == "virtio-serial":
        return root.find("devices/channel") is not None
    return any(d.get("bus") == "sata" for d in root.iterfind("devices/disk/target"))


def disk_nodes(path: str, fmt: str, ident: str, readonly: bool) -> list[str]:
    """A disk's two block nodes, as libvirt writes them since 5.x (``-blockdev``, not ``-drive``):
    the file, and the format node the device uses, named ``drive-IDENT``. Storage migration
    needs named nodes: the destination exports the format node over NBD, and a ``-drive``
    node cannot be exported while the incoming QEMU waits."""
    if "\n" in path or "\0" in path:
        raise Unsupported("paths and values must not contain newlines")
    storage: dict[str, object] = {"driver": "file", "filename": path, "node-name": f"file-{ident}"}
    fmt_node: dict[str, object] = {
        "node-name": f"drive-{ident}",
        "driver": fmt,
        "file": f"file-{ident}",
    }
    if readonly:
        storage["read-only"] = True
        fmt_node["read-only"] = True
    return [
        "-blockdev",
        json.dumps(storage, separators=(",", ":")),
        "-blockdev",
        json.dumps(fmt_node, separators=(",", ":")),
    ]


def disk_device(disk: Element, ident: str, sata_unit: int, boot: str) -> str:
    """The ``-device`` of a disk: virtio-blk on the PCI bus, or an AHCI (SATA) drive."""
    target = disk.find("target")
    bus = target.get("bus", "virtio") if target is not None else "virtio"
    if bus == "virtio":
        return f"virtio-blk-pci,drive=drive-{ident},id={ident}{pci_address(disk)}{boot}"
    if bus == "sata":
        return f"ide-hd,bus=sata0.{sata_unit},drive=drive-{ident},id={ident}{boot}"
    raise Unsupported(f"unsupported disk bus {bus!r}: virtio or sata")


def channels(root: Element, run_dir: Path, escape: EscapeFn) -> list[str]:
    """The guest-agent channel: a socket in the QEMU's run directory (the XML's path is the
    source host's; each host has its own)."""
    args: list[str] = []
    for index, channel in enumerate(root.findall("devices/channel")):
        target = channel.find("target")
        name = target.get("name", "") if target is not None else ""
        if channel.get("type") != "unix" or target is None or target.get("type") != "virtio":
            raise Unsupported("only a <channel type='unix'> with a virtio target")
        if name != GUEST_AGENT:
            raise Unsupported(f"unsupported channel {name!r}: only {GUEST_AGENT}")
        port = 1 + index
        address = channel.find("address")
        if address is not None and address.get("type") == "virtio-serial":
            port = int(address.get("port", str(port)))
        path = escape(str(run_dir / f"channel{index}.sock"))
        args += [
            "-chardev",
            f"socket,id=charchannel{index},path={path},server=on,wait=off",
            "-device",
            f"virtserialport,bus=virtio-serial0.0,nr={port},chardev=charchannel{index},"
            f"id=channel{index},name={name}",
        ]
    return args


def _serial_port(serial: Element) -> int:
    target = serial.find("target")
    return int(target.get("port", "0")) if target is not None else 0


def serials(root: Element, state_dir: Path, escape: EscapeFn) -> list[str]:
    """Serial ports in port order: a file or a pty. A file's absolute ``<source path>`` is used
    as libvirt uses it (the driver has checked it lies inside the storage roots); a relative or
    missing one is kept in the domain's directory (the first as ``console.log``, others as
    ``serial-PORT.log``). The console (``<console>``) is the first serial port."""
    ports = sorted(root.findall("devices/serial"), key=_serial_port)
    args: list[str] = []
    files = 0
    for index, serial in enumerate(ports):
        kind = serial.get("type")
        if kind == "file":
            name = "console.log" if files == 0 else f"serial-{index}.log"
            files += 1
            source = serial.find("source")
            given = source.get("path", "") if source is not None else ""
            path = escape(given if given.startswith("/") else str(state_dir / name))
            chardev = f"file,id=serial{index},path={path},append=on"
        elif kind == "pty":
            chardev = f"pty,id=serial{index}"
        else:
            raise Unsupported(f"unsupported <serial type='{kind}'>: file or pty")
        args += ["-chardev", chardev, "-serial", f"chardev:serial{index}"]
    for console in root.findall("devices/console"):
        target = console.find("target")
        if target is not None and target.get("type", "serial") != "serial":
            raise Unsupported(f"unsupported <console> target {target.get('type')!r}")
    return args


def inputs(root: Element) -> list[str]:
    args: list[str] = []
    for index, device in enumerate(root.findall("devices/input")):
        kind, bus = device.get("type"), device.get("bus", "ps2")
        if bus == "ps2" and kind in ("mouse", "keyboard"):
            continue  # the i440fx machine's own PS/2 devices
        if kind == "tablet" and bus == "usb":
            address = device.find("address")
            port = f",port={address.get('port')}" if address is not None else ""
            args += ["-device", f"usb-tablet,id=input{index},bus=usb.0{port}"]
            continue
        raise Unsupported(f"unsupported <input type='{kind}' bus='{bus}'>")
    return args


def graphics(root: Element) -> list[str]:
    """VNC: the listen address (libvirt's default 127.0.0.1), a fixed port or, with autoport,
    the first free display from 5900 (QEMU's ``to=``), without audio as libvirt 9.0 gives it."""
    found = root.findall("devices/graphics")
    if not found:
        return []
    if len(found) > 1 or found[0].get("type") != "vnc":
        raise Unsupported("only one <graphics type='vnc'> is supported")
    vnc = found[0]
    listen = vnc.find("listen")
    address = vnc.get("listen") or (listen.get("address") if listen is not None else None)
    address = address or "127.0.0.1"
    port = int(vnc.get("port", "-1"))
    autoport = vnc.get("autoport", "yes" if port < 0 else "no") == "yes"
    display = "0,to=99" if autoport else str(port - 5900)
    return [
        "-audiodev",
        "id=audio1,driver=none",
        "-vnc",
        f"{address}:{display},audiodev=audio1",
    ]


def video(root: Element) -> list[str]:
    args: list[str] = []
    for index, device in enumerate(root.findall("devices/video")):
        model = device.find("model")
        if model is None:
            model = etree.Element("model", type="vga")
        kind = model.get("type", "vga")
        if kind == "none":
            continue
        if kind not in VIDEO_MODELS:
            raise Unsupported(f"unsupported video model {kind!r}")
        vram = int(model.get("vram", "16384"))
        memory = f",vgamem_mb={vram // 1024}" if kind in ("vga", "cirrus") else ""
        args += ["-device", f"{VIDEO_MODELS[kind]},id=video{index}{memory}{pci_address(device)}"]
    return args


def memballoon(root: Element) -> list[str]:
    balloon = root.find("devices/memballoon")
    if balloon is None or balloon.get("model") == "none":
        return []
    if balloon.get("model") != "virtio":
        raise Unsupported(f"unsupported memballoon model {balloon.get('model')!r}")
    return ["-device", f"virtio-balloon-pci,id=balloon0{pci_address(balloon)}"]
