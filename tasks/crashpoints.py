"""Fault injection for crash tests: SIGKILL this process at a named point.

A worker started with ``VMIGRATE_TEST_CRASH=prepare:after`` kills itself with SIGKILL right after
its first Prepare ran on the driver and before the record heard of it. Points are
``PHASE:before``, ``PHASE:after``, ``poll`` (mid-Perform, on the source) and ``start:after-cas``
(a dispatcher that accepted a start but never published the first phase). Unset, this does nothing.
"""

from __future__ import annotations

import os
import signal

_POINT = os.environ.get("VMIGRATE_TEST_CRASH", "")


def maybe_crash(point: str) -> None:
    if _POINT and point == _POINT:
        os.kill(os.getpid(), signal.SIGKILL)
