"""Migration flags: the names vmigrate accepts, the combinations refused early, and destflags."""

from __future__ import annotations

from tasks.errors import Refused
from workers.drivers.base import (
    ABORT_ON_ERROR,
    AUTO_CONVERGE,
    LIVE,
    OFFLINE,
    PAUSED,
    PERSIST_DEST,
    POSTCOPY,
)
from workers.drivers.flags import COPY_STORAGE, KNOWN

#: Flags only the source understands; libvirt never sends them to the destination.
SOURCE_ONLY = frozenset({ABORT_ON_ERROR, AUTO_CONVERGE})


def validate_flags(flags: frozenset[str]) -> frozenset[str]:
    """Refuse unknown flags and the invalid combinations of libvirt's section 6."""
    unknown = sorted(flags - KNOWN)
    if unknown:
        raise Refused("UNKNOWN_FLAG", f"unknown migration flag(s): {', '.join(unknown)}")
    if OFFLINE in flags and PERSIST_DEST not in flags:
        raise Refused(
            "INVALID_FLAGS", "offline migration must be specified with the persistent flag set"
        )
    if OFFLINE in flags and LIVE in flags:
        raise Refused("INVALID_FLAGS", "offline migration cannot be live")
    if POSTCOPY in flags and (LIVE not in flags or PAUSED in flags):
        raise Refused(
            "INVALID_FLAGS",
            "post-copy migration is not supported with non-live or paused migration",
        )
    copying = flags & COPY_STORAGE
    if len(copying) > 1:
        raise Refused(
            "INVALID_FLAGS", "--copy-storage-all and --copy-storage-inc are mutually exclusive"
        )
    if copying and OFFLINE in flags:
        raise Refused("INVALID_FLAGS", "offline migration cannot copy disk storage")
    if copying and POSTCOPY in flags:
        raise Refused(
            "INVALID_FLAGS",
            "post-copy is not offered with storage migration: the disks must be in sync "
            "before the switch-over",
        )
    return flags


def dest_flags(flags: frozenset[str]) -> frozenset[str]:
    """The flags the destination may see (ABORT_ON_ERROR and AUTO_CONVERGE stripped)."""
    return flags - SOURCE_ONLY
