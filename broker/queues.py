"""Queue names and routing: one queue per host, one for the dispatchers, and a visible dead end.

Every vmigrate message is published with an explicit queue (see ``broker.publish``); a message that
reaches ``UNROUTED`` is a bug and is alerted on, never silently consumed by somebody else.
"""

from __future__ import annotations

import re

DISPATCHER = "vmigrate.dispatcher"
UNROUTED = "vmigrate.unrouted"
HOST_PREFIX = "vmigrate.host."

#: Host names: letters, digits, dot, dash, underscore; no path separators or shell metacharacters.
HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class InvalidHostName(ValueError):
    pass


def check_host_name(name: str) -> str:
    if not HOST_NAME.match(name or ""):
        raise InvalidHostName(
            f"invalid host name {name!r}: use 1-63 letters, digits, '.', '-' or '_'"
        )
    return name


def host_queue(host: str) -> str:
    return HOST_PREFIX + check_host_name(host)
