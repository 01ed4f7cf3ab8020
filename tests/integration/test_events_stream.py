"""Being told instead of polling: the API's server-sent events stream (live, resumable with
``Last-Event-ID``), the Python client's ``wait()`` and ``stream()`` on it, and the CLI's
read-only commands starting without Celery."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.helpers import running_vm, wait_until
from vmigrate.client import Client, NotFound, Refused

TOKEN = "test-token-1"


class RawStream:
    """``GET /v1/events/stream`` read as a browser's EventSource would, in a thread."""

    def __init__(self, api: str, query: str = "", last_event_id: str | None = None) -> None:
        parts = urlsplit(api)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.connection.request("GET", "/v1/events/stream" + query, headers=headers)
        self.socket = self.connection.sock
        self.response = self.connection.getresponse()
        self.messages: list[dict[str, Any]] = []  # each: id, event, data (parsed)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        message: dict[str, Any] = {}
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\r\n")
                if not line and message:
                    self.messages.append(message)
                    message = {}
                elif line and not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    message[name] = json.loads(value) if name == "data" else value
        except (OSError, ValueError, AttributeError):
            pass  # closed by the test (http.client then has no file to read)

    def close(self) -> None:
        """Hang up at once, as a closed browser tab does (the reader thread holds the file)."""
        self.socket.shutdown(socket.SHUT_RDWR)
        self.connection.close()

    def of(self, migration_id: str) -> list[dict[str, Any]]:
        return [m for m in list(self.messages) if m["data"]["id"] == migration_id]


def ended(stream: RawStream, migration_id: str) -> list[dict[str, Any]] | None:
    got = stream.of(migration_id)
    return got if got and got[-1]["data"]["state"] == "completed" else None


def test_the_stream_carries_each_change_live_and_resumes_after_last_event_id(api):
    client = Client(api, TOKEN)
    vm = running_vm("pxa")
    live = RawStream(api)
    try:
        assert live.response.status == 200
        assert live.response.getheader("Content-Type").startswith("text/event-stream")
        created = client.migrate(vm["name"], "pxa", "pxb", live=True)
        messages = wait_until(lambda: ended(live, created["id"]), "the completed event")
    finally:
        live.close()
    listed = [e for e in client.events(since="0", limit=10000) if e["id"] == created["id"]]
    assert [m["data"] for m in messages] == listed  # every change, as GET /v1/events has it
    assert all(m["event"] == "state" and m["id"] == m["data"]["event"] for m in messages)

    resumed = RawStream(api, last_event_id=messages[1]["id"])  # as EventSource reconnects
    try:
        tail = wait_until(lambda: ended(resumed, created["id"]), "the resumed stream's end")
    finally:
        resumed.close()
    assert [m["data"] for m in tail] == listed[2:]


def test_following_one_migration_starts_with_its_state_and_ends_with_its_end(api):
    client = Client(api, TOKEN)
    vm = running_vm("slow")  # a slower link: the stream opens while it runs
    created = client.migrate(vm["name"], "slow", "pxb", live=True)
    states = [e["state"] for e in client.stream(migration=created["id"], timeout=60)]
    assert states[-1] == "completed" and states.count("completed") == 1
    assert client.get(created["id"])["state"] == "completed"
    again = list(client.stream(migration=created["id"], timeout=60))
    assert [e["state"] for e in again] == ["completed"]  # already ended: its state, and the end


def test_wait_follows_the_stream_instead_of_polling(api):
    reads: list[str] = []

    class Counting(Client):
        def get(self, migration_id: str) -> dict[str, Any]:
            reads.append(migration_id)
            return super().get(migration_id)

    client = Counting(api, TOKEN)
    vm = running_vm("slow")
    created = client.migrate(vm["name"], "slow", "pxa", live=True)
    final = client.wait(created["id"], timeout=60)
    assert final["state"] == "completed"
    assert reads == [created["id"]]  # one read of the record, at the end


def test_a_stream_refuses_a_bad_position_or_an_unknown_migration_before_it_starts(api):
    client = Client(api, TOKEN)
    with pytest.raises(Refused) as bad:
        next(client.stream(since="yesterday"))
    assert bad.value.code == "INVALID_SINCE"
    with pytest.raises(NotFound) as unknown:
        next(client.stream(migration="no-such-migration"))
    assert unknown.value.code == "MIGRATION_UNKNOWN"
    parts = urlsplit(api)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", "/v1/events/stream")
    assert connection.getresponse().status == 401


@pytest.mark.parametrize("command", [["hosts"], ["list"], ["domains", "pxa"], ["show", "none"]])
def test_read_only_commands_start_without_celery(fleet, command):
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "vmigrate.cli", *command, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    imported = {line.split("|")[-1].strip() for line in run.stderr.splitlines() if "|" in line}
    assert run.returncode == (2 if command[0] == "show" else 0), run.stderr[-500:]
    assert "tasks.registry" in imported or "tasks.store" in imported
    assert not {m for m in imported if m.split(".")[0] in ("celery", "kombu")}
