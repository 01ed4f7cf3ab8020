"""libvirt domain XML: the facts vmigrate needs, and the guest-ABI check for destination XML.

The same documents serve the sim and the QEMU drivers. Names are restricted to characters that are
safe in file names, shell words and QEMU option values.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from dataclasses import dataclass

from lxml import etree

from workers import safexml

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DOMAIN_TYPES = ("kvm", "qemu")
UNIT_BYTES = {
    "b": 1,
    "bytes": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}


class InvalidDomain(ValueError):
    code = "INVALID_DOMAIN_XML"


class ABIMismatch(ValueError):
    code = "DEST_XML_ABI_MISMATCH"


def check_name(name: str, what: str = "domain name") -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidDomain(
            f"invalid {what} {name!r}: use 1-64 letters, digits, '.', '-' or '_', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Domain:
    """A parsed domain definition; ``xml`` is the canonical text the facts were read from."""

    name: str
    uuid: str
    type: str
    memory_kib: int
    vcpus: int
    xml: str

    @property
    def memory_bytes(self) -> int:
        return self.memory_kib * 1024


def memory_kib(element: etree._Element) -> int:
    unit = (element.get("unit") or "KiB").lower()
    if unit not in UNIT_BYTES:
        raise InvalidDomain(f"unknown memory unit {element.get('unit')!r}")
    try:
        value = int((element.text or "").strip())
    except ValueError:
        raise InvalidDomain(f"memory must be an integer, got {element.text!r}") from None
    if value <= 0:
        raise InvalidDomain("memory must be positive")
    return max(1, value * UNIT_BYTES[unit] // 1024)


def _required(root: etree._Element, tag: str) -> etree._Element:
    found = root.find(tag)
    if found is None:
        raise InvalidDomain(f"domain XML has no <{tag}> element")
    return found


def parse_domain(
    text: str, max_bytes: int = safexml.DEFAULT_MAX_BYTES, assign_uuid: bool = False
) -> Domain:
    """Parse and validate a domain definition. ``assign_uuid`` adds a uuid when there is none."""
    root = safexml.parse(text, "domain XML", max_bytes)
    if root.tag != "domain":
        raise InvalidDomain(f"root element must be <domain>, not <{root.tag}>")
    dom_type = root.get("type")
    if dom_type not in DOMAIN_TYPES:
        raise InvalidDomain(
            f"domain type must be one of {', '.join(DOMAIN_TYPES)}, not {dom_type!r}"
        )
    name = check_name((_required(root, "name").text or "").strip())
    uuid_el = root.find("uuid")
    if uuid_el is None and assign_uuid:
        uuid_el = etree.Element("uuid")
        uuid_el.text = str(uuidlib.uuid4())
        root.insert(list(root).index(_required(root, "name")) + 1, uuid_el)
    if uuid_el is None:
        raise InvalidDomain("domain XML has no <uuid> element")
    try:
        dom_uuid = str(uuidlib.UUID((uuid_el.text or "").strip()))
    except ValueError:
        raise InvalidDomain(f"invalid uuid {uuid_el.text!r}") from None
    uuid_el.text = dom_uuid
    memory = memory_kib(_required(root, "memory"))
    vcpu_text = (root.findtext("vcpu") or "1").strip()
    try:
        vcpus = int(vcpu_text)
    except ValueError:
        raise InvalidDomain(f"vcpu must be an integer, got {vcpu_text!r}") from None
    if not 1 <= vcpus <= 4096:
        raise InvalidDomain(f"vcpu count {vcpus} is out of range")
    from workers import domain_rules  # noqa: PLC0415 (it builds on this module)

    domain_rules.check_rules(root)
    domain_rules.check_schema(root)
    return Domain(name, dom_uuid, dom_type, memory, vcpus, safexml.to_string(root))


def renamed(xml: str, new_name: str) -> str:
    """The same definition under another name (what Prepare does with a dname)."""
    root = safexml.parse(xml, "domain XML")
    _required(root, "name").text = check_name(new_name)
    return safexml.to_string(root)


# Guest-visible properties that must not change (libvirt's virDomainDefCheckABIStability, abridged).
_DEVICE_KEYS: dict[str, tuple[str, ...]] = {
    "disk": ("device", "target/@dev", "target/@bus", "serial", "readonly"),
    "interface": ("mac/@address", "model/@type"),
    "controller": ("type", "index", "model"),
    "serial": ("target/@port",),
    "console": ("target/@type",),
    "input": ("type", "bus"),
    "video": ("model/@type",),
    "memballoon": ("model",),
    "rng": ("model",),
    "watchdog": ("model",),
    "tpm": ("model",),
}


def _value(element: etree._Element, path: str) -> str | None:
    if path.startswith("@"):
        return element.get(path[1:])
    if "/@" in path:
        child_path, attr = path.split("/@")
        child = element.find(child_path)
        return None if child is None else child.get(attr)
    if element.get(path) is not None:
        return element.get(path)
    child = element.find(path)
    if child is None:
        return None
    return (child.text or "").strip() or "present"


def _abi_summary(root: etree._Element) -> dict[str, object]:
    os_type = root.find("os/type")
    cpu = root.find("cpu")
    devices = root.find("devices")
    summary: dict[str, object] = {
        "type": root.get("type"),
        "name": (root.findtext("name") or "").strip(),
        "uuid": (root.findtext("uuid") or "").strip(),
        "memory": memory_kib(_required(root, "memory")),
        "vcpu": (root.findtext("vcpu") or "1").strip(),
        "arch": None if os_type is None else os_type.get("arch"),
        "machine": None if os_type is None else os_type.get("machine"),
        "cpu": None if cpu is None else cpu.get("mode"),
    }
    for tag, keys in _DEVICE_KEYS.items():
        found = [] if devices is None else devices.findall(tag)
        summary[f"devices/{tag}"] = [tuple(_value(dev, k) for k in keys) for dev in found]
    return summary


def check_abi_stable(current_xml: str, new_xml: str) -> None:
    """Refuse a destination XML that changes the guest ABI; host-side paths may differ."""
    old = _abi_summary(safexml.parse(current_xml, "domain XML"))
    new = _abi_summary(safexml.parse(new_xml, "destination XML"))
    for key, value in old.items():
        if new.get(key) != value:
            raise ABIMismatch(
                f"destination XML does not keep the guest ABI: {key} is {new.get(key)!r}, "
                f"the running domain has {value!r}"
            )
