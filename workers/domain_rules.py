"""Checking a domain definition the way libvirt would, before any host acts on it.

Two layers. Where libvirt is installed, its own RelaxNG schema (``/usr/share/libvirt/schemas/
domain.rng``, which libvirt applies with ``virsh define --validate``) judges the whole document.
Everywhere, the rules the drivers rely on are checked here, so that a host without libvirt
refuses what libvirt refuses in those parts: a disk without a target, two disks on one target, an
invalid ``cpuset``, a malformed MAC address, ``currentMemory`` above ``memory``, an unknown
lifecycle action.
Each refusal is an ``InvalidDomain`` sentence naming the element. ``domxml.parse_domain`` runs
both after its own checks, so every define, Prepare and destination XML goes through them.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from lxml import etree

from workers.domxml import InvalidDomain, memory_kib

#: libvirt's schema where libvirt is installed (package libvirt0 on Debian).
LIBVIRT_SCHEMA = Path("/usr/share/libvirt/schemas/domain.rng")

CPUSET = re.compile(r"^\^?\d+(-\d+)?(,\^?\d+(-\d+)?)*$")
MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
LIFECYCLE = {
    "on_poweroff": {"destroy", "restart", "preserve", "rename-restart"},
    "on_reboot": {"destroy", "restart", "preserve", "rename-restart"},
    "on_crash": {
        "destroy",
        "restart",
        "preserve",
        "rename-restart",
        "coredump-destroy",
        "coredump-restart",
    },
}


@functools.cache
def _schema(path: Path) -> etree.RelaxNG | None:
    """libvirt's compiled schema, or None where it is not installed (read once per process)."""
    if not path.is_file():
        return None
    return etree.RelaxNG(etree.parse(str(path)))


def check_schema(root: etree._Element, path: Path = LIBVIRT_SCHEMA) -> None:
    """Refuse what libvirt's RelaxNG schema refuses, where the schema is installed."""
    schema = _schema(path)
    if schema is None or schema.validate(root):
        return
    errors = list(schema.error_log)
    where = next((e.path for e in errors if e.path), "/domain")
    detail = errors[0].message if errors else "invalid"
    raise InvalidDomain(
        f"domain XML does not validate against libvirt's schema ({path.name}) at {where}: {detail}"
    )


def cpuset_valid(text: str) -> bool:
    """libvirt's cpuset syntax (``0-3,^2,8``): numbers and ascending ranges, with exclusions."""
    if not CPUSET.match(text):
        return False
    for part in text.replace("^", "").split(","):
        low, _, high = part.partition("-")
        if high and int(high) < int(low):
            return False
    return True


def check_rules(root: etree._Element) -> None:
    """The rules the drivers rely on, checked on every host."""
    _check_cpusets(root)
    _check_disks(root)
    _check_macs(root)
    _check_current_memory(root)
    _check_lifecycle(root)


def _check_cpusets(root: etree._Element) -> None:
    for element in root.iter("vcpu", "vcpupin", "emulatorpin", "memory", "memnode", "cell"):
        for attribute in ("cpuset", "cpus", "nodeset"):
            value = element.get(attribute)
            if value is not None and not cpuset_valid(value.strip()):
                raise InvalidDomain(
                    f"invalid {attribute} {value!r} in <{element.tag}>: use numbers and ranges "
                    "such as 0-3,^2,8"
                )


def _check_disks(root: etree._Element) -> None:
    seen: set[str] = set()
    for disk in root.iterfind("devices/disk"):
        target = disk.find("target")
        dev = (target.get("dev") or "").strip() if target is not None else ""
        if not dev:
            raise InvalidDomain("a <disk> has no <target dev='...'>")
        if dev in seen:
            raise InvalidDomain(f"two disks have the target {dev!r}")
        seen.add(dev)


def _check_macs(root: etree._Element) -> None:
    for mac in root.iterfind("devices/interface/mac"):
        address = (mac.get("address") or "").strip()
        if not MAC.match(address):
            raise InvalidDomain(f"invalid MAC address {address!r} in <interface>")
        if int(address[:2], 16) & 1:
            raise InvalidDomain(f"MAC address {address!r} is multicast, not a NIC's")


def _check_current_memory(root: etree._Element) -> None:
    current = root.find("currentMemory")
    memory = root.find("memory")
    if current is not None and memory is not None and memory_kib(current) > memory_kib(memory):
        raise InvalidDomain("<currentMemory> must not exceed <memory>")


def _check_lifecycle(root: etree._Element) -> None:
    for tag, allowed in LIFECYCLE.items():
        value = root.findtext(tag)
        if value is not None and value.strip() not in allowed:
            raise InvalidDomain(
                f"invalid <{tag}> action {value.strip()!r}: one of {', '.join(sorted(allowed))}"
            )
