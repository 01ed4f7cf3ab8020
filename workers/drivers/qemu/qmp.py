"""A minimal QMP client: one short connection per command, events skipped."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from workers.drivers.base import DriverError


class QMPError(DriverError):
    code = "QMP_ERROR"


def _read_reply(stream: Any) -> dict[str, Any]:
    while True:
        line = stream.readline()
        if not line:
            raise QMPError("QEMU closed its monitor connection")
        message = json.loads(line)
        if "event" not in message:
            return dict(message)


def execute(
    sock_path: Path, command: str, arguments: dict[str, Any] | None = None, timeout: float = 10.0
) -> Any:
    """Run one QMP command and return its ``return`` value; raise ``QMPError`` on error."""
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(str(sock_path))
            stream = sock.makefile("rw", encoding="utf-8", newline="\n")
            _read_reply(stream)  # greeting
            for cmd, args in (("qmp_capabilities", None), (command, arguments)):
                request: dict[str, Any] = {"execute": cmd}
                if args:
                    request["arguments"] = args
                stream.write(json.dumps(request) + "\n")
                stream.flush()
                reply = _read_reply(stream)
                if "error" in reply:
                    raise QMPError(
                        f"QEMU refused {cmd}: {reply['error'].get('desc', reply['error'])}"
                    )
            return reply.get("return")
    except (OSError, ValueError) as exc:
        raise QMPError(f"cannot talk to QEMU at {sock_path}: {exc}") from None


def reachable(sock_path: Path) -> bool:
    try:
        execute(sock_path, "query-status", timeout=2.0)
        return True
    except QMPError:
        return False
