"""``make bench`` / ``python -m tests.bench [overhead|fleet|qemu|libvirt|storage]``: run benchmarks, print ratios."""

from __future__ import annotations

import datetime as dt
import importlib
import platform
import signal
import sys

ALL = ["overhead", "fleet", "qemu", "libvirt", "storage"]


def _stop_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # so every benchmark's ``finally`` ends its processes


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _stop_cleanly)
    chosen = argv or ALL
    print(
        f"vmigrate benchmarks, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.machine()}, {platform.python_version()}"
    )
    for name in chosen:
        module = importlib.import_module(f"tests.bench.{name}")
        print()
        print(module.run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
