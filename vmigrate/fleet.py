"""Start and stop a fleet of host workers and dispatchers on this machine, as real processes.

Used by ``vmigrate demo``, the integration tests and the benchmarks. Every process is ended by its
pid, even when the caller fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from broker import keys
from broker.connection import Client


class LocalFleet:
    def __init__(
        self,
        env: dict[str, str],
        home: Path,
        log_dir: Path | None = None,
        python: str = sys.executable,
    ) -> None:
        """``python``: the interpreter whose vmigrate runs the processes; another one than this
        process's (another release's virtual environment, for upgrade tests) runs with ``-P``,
        so the modules of a checkout in the current directory are never found first."""
        self.env = {**os.environ, **env, "VMIGRATE_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        self.python = python
        self.home = home
        self.log_dir = log_dir or home / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def _spawn(
        self, name: str, args: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 (the child owns it)
        isolated = ["-P"] if self.python != sys.executable else []
        proc = subprocess.Popen(
            [self.python, *isolated, "-m", "vmigrate.cli", *args],
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes[name] = proc
        return proc

    def start_host(
        self, name: str, *extra: str, protocols: str = "1,2,3", env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """A host worker; ``env`` adds settings of this host's own (its migration address)."""
        args = [
            "worker",
            "--host",
            name,
            "--protocols",
            protocols,
            "--state-dir",
            str(self.home / "hosts" / name),
            *extra,
        ]
        return self._spawn(name, args, env)

    def start_hosts(self, names: list[str], *extra: str) -> subprocess.Popen[bytes]:
        """One worker process serving several sim hosts (for benchmarks and test beds)."""
        args = ["worker", "--host", *names, "--state-dir", str(self.home / "hosts"), *extra]
        return self._spawn(f"{names[0]}-and-{len(names) - 1}-more", args)

    def start_dispatcher(self, name: str = "dispatcher") -> subprocess.Popen[bytes]:
        return self._spawn(name, ["dispatcher"])

    def wait_ready(self, client: Client, hosts: list[str], timeout: float = 60.0) -> None:
        """Wait until every host is alive: a worker marks its hosts alive once its consumer
        listens (see workers/host.py)."""

        deadline = time.monotonic() + timeout
        pending = set(hosts)
        while pending and time.monotonic() < deadline:
            pending = {h for h in pending if not client.exists(keys.host_alive(h))}
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.log_dir}")
            time.sleep(0.1)
        if pending:
            raise TimeoutError(f"hosts not ready after {timeout} s: {sorted(pending)}")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        proc = self.processes.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)
