"""Documented options and interfaces, each checked where a user would look: --persist and
--undefine-source on both hosts, the events command and API from a point, and a refusal sent
through the broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from broker import keys
from broker.queues import DISPATCHER
from tasks.publish import SUBMIT_TASK, send
from tasks.runtime import runtime
from tasks.submission import MigrationRequest, submit
from tests.helpers import (
    V3_STATES,
    domain_on,
    migrate,
    running_vm,
    unique,
    wait_terminal,
    wait_until,
)
from vmigrate.client import Client


@pytest.mark.parametrize("version_host", ["pxb", "p2b", "p1b"])
def test_persist_leaves_a_persistent_domain_and_the_source_its_definition(fleet, version_host):
    vm = running_vm("pxa")
    record = migrate(vm["name"], "pxa", version_host, flags=["live", "persist"])
    assert record.state == "completed", record.error
    arrived = domain_on(version_host, vm["name"])
    assert arrived["state"] == "running" and arrived["persistent"] is True
    left = domain_on("pxa", vm["name"])
    assert left is not None and left["state"] == "shutoff" and left["persistent"] is True


def test_without_persist_the_destination_runs_a_transient_domain(fleet):
    vm = running_vm("pxa")
    assert migrate(vm["name"], "pxa", "pxb", flags=["live"]).state == "completed"
    arrived = domain_on("pxb", vm["name"])
    assert arrived["state"] == "running" and arrived["persistent"] is False


@pytest.mark.parametrize("version_host", ["pxb", "p2b", "p1b"])
def test_undefine_source_leaves_no_definition_behind(fleet, version_host):
    vm = running_vm("pxa")
    flags = ["live", "persist", "undefine_source"]
    assert migrate(vm["name"], "pxa", version_host, flags=flags).state == "completed"
    assert domain_on("pxa", vm["name"]) is None
    assert domain_on(version_host, vm["name"])["persistent"] is True


def test_a_failed_migration_with_undefine_source_keeps_the_source_defined_and_running(fleet):
    vm = running_vm("pxa", faults=("finish",))
    flags = ["live", "persist", "undefine_source"]
    record = migrate(vm["name"], "pxa", "pxb", flags=flags)
    assert record.state == "failed"
    kept = domain_on("pxa", vm["name"])
    assert kept["state"] == "running" and kept["persistent"] is True


def last_event_id() -> str:
    last = runtime().redis.xrevrange(keys.events(), count=1)
    return last[0][0] if last else "0"


def events_cli(*args: str, **popen) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "vmigrate.cli", "events", "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
        **popen,
    )


def test_events_since_shows_only_what_came_after(fleet):
    before = running_vm("p3a")
    earlier = migrate(before["name"], "p3a", "p3b", flags=["live"])
    mark = last_event_id()
    vm = running_vm("p3a")
    later = migrate(vm["name"], "p3a", "p3b", flags=["live"])

    out, err = events_cli("--since", mark).communicate(timeout=60)
    events = [json.loads(line) for line in out.splitlines()]
    assert err == ""
    assert [e["state"] for e in events if e["id"] == later.id] == V3_STATES
    assert not [e for e in events if e["id"] == earlier.id]
    assert all(e["event"] > mark for e in events)

    everything = [json.loads(x) for x in events_cli().communicate(timeout=60)[0].splitlines()]
    assert any(e["id"] == earlier.id for e in everything)


def test_events_follow_prints_changes_as_they_happen(fleet):
    follower = events_cli("--since", last_event_id(), "--follow")
    try:
        vm = running_vm("p3a")
        record = submit(MigrationRequest(vm["name"], "p3a", "p3b", flags=["live"]))
        seen = []
        while "completed" not in seen:
            line = follower.stdout.readline()
            assert line, f"the follower stopped: {follower.stderr.read()}"
            event = json.loads(line)
            if event["id"] == record.id:
                seen.append(event["state"])
        assert seen[0] == "pending" and seen[-1] == "completed"
        assert follower.poll() is None  # still following
    finally:
        follower.terminate()
        follower.wait(10)


def test_api_events_since_leaves_out_what_came_before(api):
    client = Client(api, "test-token-1")
    vm = running_vm("p3a")
    earlier = client.wait(client.migrate(vm["name"], "p3a", "p3b")["id"])
    mark = last_event_id()
    vm = running_vm("p3a")
    later = client.wait(client.migrate(vm["name"], "p3a", "p3b")["id"])
    events = client.events(since=mark, limit=10000)
    assert "completed" in [e["state"] for e in events if e["id"] == later["id"]]
    assert not [e for e in events if e["id"] == earlier["id"]]


def test_a_refusal_through_the_broker_is_kept_under_its_id(fleet):
    vm = running_vm("pxa")
    refused_id, accepted_id = unique("refused"), unique("accepted")
    request = {"domain": vm["name"], "source": "pxa", "destination": "p1b", "id": refused_id}
    send(SUBMIT_TASK, [{**request, "dname": "renamed", "flags": ["live"]}], DISPATCHER)
    record = wait_until(lambda: runtime().store.get(refused_id), "the refusal recorded")
    assert record.state == "failed" and record.phases == []
    assert record.error["code"] == "DNAME_UNSUPPORTED"
    assert "cannot rename" in record.error["message"]
    assert domain_on("pxa", vm["name"])["state"] == "running"
    assert domain_on("p1b", vm["name"]) is None
    # Nothing holds the domain: the same VM can be migrated right away.
    send(SUBMIT_TASK, [{**request, "id": accepted_id, "flags": ["live"]}], DISPATCHER)
    wait_until(lambda: runtime().store.get(accepted_id), "the second request recorded")
    assert wait_terminal(accepted_id).state == "completed"
    assert runtime().store.get(refused_id).state == "failed"  # the refusal was not overwritten


@pytest.mark.parametrize("since", ["garbage", "", "12-x", "-1"])
def test_a_bad_since_is_refused_clearly_by_the_cli_and_the_api(api, since):
    cli = events_cli("--since", since)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 2 and out == "" and "[INVALID_SINCE]" in err and "Traceback" not in err
    answer = httpx.get(
        f"{api}/v1/events",
        params={"since": since},
        headers={"Authorization": "Bearer test-token-1"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "INVALID_SINCE"
