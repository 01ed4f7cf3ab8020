"""The bounds of a migration request, declared once: submission checks them, the API's request
model and the CLI's options are made from them."""

from __future__ import annotations

from broker.settings import Settings

#: A migration's bandwidth cap, in MiB/s.
MAX_BANDWIDTH_MIBPS = 1_000_000
#: Priorities: higher starts first.
MIN_PRIORITY, MAX_PRIORITY = -1000, 1000
#: A migration id the caller chooses: 1-64 of these characters.
ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
MAX_ID_LENGTH = 64
#: ``--migrate-disks``: at most this many disk targets, each 1-32 of ``DISK_TARGET_CHARS``.
MAX_MIGRATE_DISKS = 64
DISK_TARGET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
MAX_DISK_TARGET_LENGTH = 32


def valid_id(text: object) -> bool:
    """A migration id a caller may choose."""
    return isinstance(text, str) and 0 < len(text) <= MAX_ID_LENGTH and set(text) <= ID_CHARS


def valid_disk_target(text: object) -> bool:
    """A disk's target name as libvirt writes it (``vda``, ``sdb``)."""
    return (
        isinstance(text, str)
        and 0 < len(text) <= MAX_DISK_TARGET_LENGTH
        and set(text) <= DISK_TARGET_CHARS
    )


#: A destination XML (--xml): at most the configured ``max_xml_bytes`` (this is its default).
DEFAULT_MAX_XML_BYTES = Settings.max_xml_bytes
