"""Migration cookies: small XML documents the phases hand each other, as libvirt's QEMU driver does.

A cookie names the domain (original name and uuid) and the sending host (name and host uuid), lists
mandatory features, and may carry statistics. Every receiver validates it: the wrong domain, a
migration to the same host, or a mandatory feature it does not know is refused with a clear error.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass, field

from lxml import etree

from workers import safexml

ROOT = "vmigrate-migration"
#: Mandatory features this implementation understands, by the phase that may receive them.
ACCEPTED_FEATURES: dict[str, frozenset[str]] = {
    "prepare": frozenset({"lockstate", "nbd"}),
    "perform": frozenset({"nbd"}),
    "finish": frozenset({"persistent"}),
    "confirm": frozenset(),
}
MAX_COOKIE_BYTES = 4 * 1024 * 1024


class CookieRejected(ValueError):
    code = "COOKIE_REJECTED"


class SameHost(CookieRejected):
    code = "SAME_HOST"


@dataclass(frozen=True)
class CookieDisk:
    """A disk a storage migration copies: what the destination needs to create its image."""

    target: str
    capacity: int  # virtual size in bytes
    format: str
    backing: str | None = None  # --copy-storage-inc: the backing file that must be there
    backing_format: str | None = None


@dataclass(frozen=True)
class Nbd:
    """libvirt's ``<nbd>`` cookie element: Begin lists the disks to copy; Prepare adds the NBD
    server they are copied to. A cookie with it names the mandatory feature ``nbd``, so a
    receiver that cannot copy storage refuses it instead of ignoring the disks."""

    disks: tuple[CookieDisk, ...]
    host: str | None = None
    port: int | None = None

    def to_element(self, parent: etree._Element) -> None:
        nbd = etree.SubElement(parent, "nbd")
        if self.host is not None and self.port is not None:
            nbd.set("host", self.host)
            nbd.set("port", str(self.port))
        for disk in self.disks:
            el = etree.SubElement(
                nbd, "disk", target=disk.target, capacity=str(disk.capacity), format=disk.format
            )
            if disk.backing:
                el.set("backing", disk.backing)
                el.set("backing-format", disk.backing_format or "raw")

    @classmethod
    def from_element(cls, nbd: etree._Element) -> Nbd:
        try:
            disks = tuple(
                CookieDisk(
                    d.get("target", ""),
                    int(d.get("capacity", "")),
                    d.get("format", "raw"),
                    d.get("backing"),
                    d.get("backing-format"),
                )
                for d in nbd.findall("disk")
            )
            port = int(nbd.get("port", "")) if nbd.get("port") else None
        except ValueError:
            raise CookieRejected(
                "migration cookie's <nbd> has a non-integer size or port"
            ) from None
        return cls(disks, nbd.get("host"), port)


@dataclass(frozen=True)
class Cookie:
    name: str
    uuid: str | None
    hostname: str
    hostuuid: str
    features: tuple[str, ...] = ()
    statistics: dict[str, int] = field(default_factory=dict)
    #: How the sender's libvirt daemon is reached by its peer (the libvirt driver's Begin and
    #: Prepare cookies); an optional element, which older readers ignore.
    daemon_uri: str | None = None
    #: Storage migration's disks and NBD server (mandatory feature ``nbd``).
    nbd: Nbd | None = None

    def to_xml(self) -> str:
        root = etree.Element(ROOT)
        for tag in ("name", "uuid", "hostname", "hostuuid"):
            if getattr(self, tag) is not None:
                etree.SubElement(root, tag).text = getattr(self, tag)
        features = self.features
        if self.nbd and "nbd" not in features:
            features = (*features, "nbd")
        for feature in features:
            etree.SubElement(root, "feature", name=feature)
        if self.daemon_uri:
            etree.SubElement(root, "daemon-uri").text = self.daemon_uri
        if self.nbd:
            self.nbd.to_element(root)
        if self.statistics:
            stats = etree.SubElement(root, "statistics")
            for key, value in sorted(self.statistics.items()):
                etree.SubElement(stats, key).text = str(int(value))
        return safexml.to_string(root)


def _text(root: etree._Element, tag: str) -> str:
    value = (root.findtext(tag) or "").strip()
    if not value:
        raise CookieRejected(f"migration cookie has no <{tag}> element")
    return value


def parse_cookie(text: str) -> Cookie:
    root = safexml.parse(text, "migration cookie", MAX_COOKIE_BYTES)
    if root.tag != ROOT:
        raise CookieRejected(f"migration cookie root must be <{ROOT}>, not <{root.tag}>")
    stats: dict[str, int] = {}
    stats_el = root.find("statistics")
    if stats_el is not None:
        for child in stats_el:
            try:
                stats[str(child.tag)] = int((child.text or "0").strip())
            except ValueError:
                raise CookieRejected(f"cookie statistic {child.tag} is not an integer") from None
    return Cookie(
        name=_text(root, "name"),
        uuid=(root.findtext("uuid") or "").strip() or None,
        hostname=_text(root, "hostname"),
        hostuuid=_text(root, "hostuuid"),
        features=tuple(f.get("name", "") for f in root.findall("feature")),
        statistics=stats,
        daemon_uri=(root.findtext("daemon-uri") or "").strip() or None,
        nbd=Nbd.from_element(nbd) if (nbd := root.find("nbd")) is not None else None,
    )


def validate_cookie(
    text: str,
    *,
    phase: str,
    expect_name: str,
    expect_uuid: str,
    local_host_uuid: str,
    uuid_optional: bool = False,
) -> Cookie:
    """Parse ``text`` and check it belongs to this domain and comes from another host.

    ``uuid_optional`` is only for v1's Prepare cookie: that destination has not seen the
    definition yet, so it cannot name the uuid.
    """
    cookie = parse_cookie(text)
    if cookie.uuid is None and not uuid_optional:
        raise CookieRejected("migration cookie has no <uuid> element")
    if cookie.name != expect_name:
        raise CookieRejected(
            f"incoming cookie data had unexpected name {cookie.name} vs {expect_name}"
        )
    try:
        same_uuid = cookie.uuid is None or uuidlib.UUID(cookie.uuid) == uuidlib.UUID(expect_uuid)
    except ValueError:
        raise CookieRejected(f"migration cookie carries an invalid uuid {cookie.uuid!r}") from None
    if not same_uuid:
        raise CookieRejected(
            f"incoming cookie data had unexpected UUID {cookie.uuid} vs {expect_uuid}"
        )
    if cookie.hostuuid == local_host_uuid:
        raise SameHost(f"attempt to migrate guest to the same host {cookie.hostuuid}")
    accepted = ACCEPTED_FEATURES.get(phase, frozenset())
    for feature in {*cookie.features, *(("nbd",) if cookie.nbd else ())}:
        if feature not in accepted:
            raise CookieRejected(f"unsupported migration cookie feature {feature} in {phase}")
    return cookie
