"""libvirt's migration flags as vmigrate knows them, declared once.

Each flag has its wire name (the value, as records, messages and drivers spell it), its CLI option
and API field (dashes), and what it means. The CLI options of ``vmigrate migrate``, the REST API's
request fields and the set of known flags are all made from this enum.
"""

from __future__ import annotations

from enum import StrEnum


class Flag(StrEnum):
    LIVE = "live"
    PAUSED = "paused"
    PERSIST = "persist"
    UNDEFINE_SOURCE = "undefine_source"
    OFFLINE = "offline"
    AUTO_CONVERGE = "auto_converge"
    ABORT_ON_ERROR = "abort_on_error"
    POSTCOPY = "postcopy"
    COPY_STORAGE_ALL = "copy_storage_all"
    COPY_STORAGE_INC = "copy_storage_inc"

    @property
    def option(self) -> str:
        """The CLI option and the API field name (``--undefine-source``, ``undefine-source``)."""
        return self.value.replace("_", "-")

    @property
    def meaning(self) -> str:
        return MEANING[self]


MEANING: dict[Flag, str] = {
    Flag.LIVE: "copy memory while the guest runs (VIR_MIGRATE_LIVE)",
    Flag.PAUSED: "leave the guest paused on the destination (VIR_MIGRATE_PAUSED)",
    Flag.PERSIST: "define the domain persistently on the destination (VIR_MIGRATE_PERSIST_DEST)",
    Flag.UNDEFINE_SOURCE: "remove the source's definition once the destination runs it",
    Flag.OFFLINE: "move only the definition of a shut-off domain; needs --persist (v3)",
    Flag.AUTO_CONVERGE: "throttle the guest's vCPUs if the copy does not converge",
    Flag.ABORT_ON_ERROR: "abort the migration on an I/O error during it",
    Flag.POSTCOPY: "allow switching to post-copy when pre-copy cannot converge (needs --live)",
    Flag.COPY_STORAGE_ALL: "copy the disks with the memory: local disks, not shared storage "
    "(VIR_MIGRATE_NON_SHARED_DISK)",
    Flag.COPY_STORAGE_INC: "copy only each disk's top image; the backing files are already on the "
    "destination (VIR_MIGRATE_NON_SHARED_INC)",
}

#: The flags that copy disks (storage migration); at most one of them.
COPY_STORAGE = frozenset({Flag.COPY_STORAGE_ALL, Flag.COPY_STORAGE_INC})

#: Every flag name vmigrate accepts.
KNOWN = frozenset(Flag)
