"""Parse XML that arrives from users and other hosts, safely.

No DTD, no entity expansion, no network, no huge trees, and a size bound checked before lxml sees a
byte. Everything that reads domain XML or cookies goes through ``parse``.
"""

from __future__ import annotations

from lxml import etree

DEFAULT_MAX_BYTES = 1_048_576


class XMLRejected(ValueError):
    """The document is malformed, too large, or uses a feature we refuse (DTD, entities)."""

    code = "INVALID_XML"


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse(
    text: str | bytes, what: str = "XML", max_bytes: int = DEFAULT_MAX_BYTES
) -> etree._Element:
    """Return the root element of ``text`` or raise ``XMLRejected`` with a clear sentence."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    if len(data) > max_bytes:
        raise XMLRejected(f"{what} is {len(data)} bytes, more than the {max_bytes} allowed")
    if b"<!DOCTYPE" in data.upper() or b"<!ENTITY" in data.upper():
        raise XMLRejected(f"{what} must not contain a DOCTYPE or entity declarations")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise XMLRejected(f"{what} is not well-formed XML: {exc}") from None
    if root is None:
        raise XMLRejected(f"{what} is empty")
    if root.getroottree().docinfo.internalDTD is not None:
        raise XMLRejected(f"{what} must not contain a DTD")
    for node in root.iter():
        if isinstance(node, etree._Entity):
            raise XMLRejected(f"{what} must not use entities")
    return root


def to_string(root: etree._Element) -> str:
    return etree.tostring(root, encoding="unicode")
