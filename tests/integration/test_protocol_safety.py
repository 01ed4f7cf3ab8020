"""Stale registrations, duplicated messages, cookies from the wrong place, and busy domains."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from broker import keys
from broker.queues import DISPATCHER, host_queue
from tasks.errors import Refused
from tasks.publish import PHASE_TASK, POLL_TASK, START_TASK, send
from tasks.runtime import runtime
from tasks.submission import MigrationRequest, submit
from tests import helpers
from tests.conftest import FAST_RECOVERY, HOME, REDIS_URL, TWIN_UUID
from tests.helpers import (
    domain_on,
    finished_tasks,
    live_copies,
    metrics_text,
    migrate,
    running_vm,
    start_with_metrics,
    unique,
    wait_terminal,
    wait_until,
)
from vmigrate.fleet import LocalFleet


@pytest.fixture
def stale_registration(fleet):
    """p1b speaks v1 only, but its registration claims v1, v2 and v3."""
    with helpers.stale_registration("p1b", [1, 2, 3]):
        yield


def test_stale_registry_falls_back_to_a_common_version(stale_registration):
    vm = running_vm("pxa")
    record = migrate(vm["name"], "pxa", "p1b", flags=["live"])

    assert record.state == "completed", record.error
    assert record.protocol == 1
    refused = [(p.version, p.name) for p in record.phases if p.outcome == "failed"]
    assert refused == [(3, "prepare"), (2, "prepare")]
    assert all(p.error["code"] == "VERSION_UNSUPPORTED" for p in record.phases if p.error)
    assert any("falling back to v2" in w for w in record.warnings)
    assert live_copies(vm["uuid"]) == [("p1b", vm["name"], "running")]


def test_stale_registry_with_a_rename_fails_cleanly(stale_registration):
    vm = running_vm("pxa")
    record = migrate(vm["name"], "pxa", "p1b", dname=unique("new"), flags=["live"])

    assert record.state == "failed"
    assert record.error["code"] == "VERSION_UNSUPPORTED"
    assert "cannot rename" in record.error["message"]
    assert live_copies(vm["uuid"]) == [("pxa", vm["name"], "running")]


def test_duplicated_messages_change_nothing(fleet):
    """Re-send the start, every phase and a poll while the migration runs and after it ended."""
    vm = running_vm("slow", memory_mib=1024)  # 4 s of transfer on slow's 256 MiB/s link
    record = submit(MigrationRequest(vm["name"], "slow", "pxa", flags=["live"]))

    def polling():
        r = runtime().store.get(record.id)
        return r if r.step and r.step.status == "polling" else None

    running = wait_until(polling, "Perform polling")
    assert running.state == "perform"
    dispatchers = [
        f"dispatcher-{proc.pid}@vmigrate"
        for name, proc in fleet.processes.items()
        if name.startswith("dispatcher") and proc.poll() is None
    ]

    def everything(current) -> list[tuple[str, list, str, tuple[str, str]]]:
        """The start, every phase and a poll: (task, args, queue, which worker counts it)."""
        plan = [(START_TASK, [record.id], DISPATCHER, ("dispatchers", START_TASK))]
        steps = [(seq, p.name, p.cancelled) for seq, p in enumerate(current.phases, start=1)]
        if current.step:
            steps.append((current.step.seq, current.step.phase, current.step.cancelled))
        for seq, phase, cancelled in steps:
            host = (
                current.source if phase in ("begin", "perform", "confirm") else current.destination
            )
            message = {
                "migration": record.id,
                "attempt": current.attempt,
                "seq": seq,
                "phase": phase,
                "cancelled": cancelled,
            }
            node = f"{host}@vmigrate"
            plan.append((PHASE_TASK, [message], host_queue(host), (node, PHASE_TASK)))
            plan.append((POLL_TASK, [{**message, "poll": 0}], host_queue(host), (node, POLL_TASK)))
        return plan

    def finished(node: str, task: str) -> int:
        nodes = dispatchers if node == "dispatchers" else [node]
        return sum(finished_tasks(n, task) for n in nodes)

    def resend_everything(current) -> None:
        """Re-send it all and wait until the workers have handled every copy."""
        plan = everything(current)
        sent = Counter(key for *_, key in plan)
        counted = {key: finished(*key) for key in sent}
        for task, args, queue, _ in plan:
            send(task, args, queue)
        wait_until(
            lambda: all(finished(*key) >= counted[key] + n for key, n in sent.items()),
            "every re-sent message handled",
        )

    resend_everything(running)
    final = wait_terminal(record.id)
    resend_everything(final)

    after = runtime().store.get(record.id)
    assert final.state == "completed"
    assert [p.name for p in after.phases] == ["begin", "prepare", "perform", "finish", "confirm"]
    assert after.to_json() == final.to_json()
    assert live_copies(vm["uuid"]) == [("pxa", vm["name"], "running")]


def test_migration_between_hosts_with_one_host_uuid_is_refused(fleet):
    """twin-a and twin-b share a host uuid: the destination's cookie check refuses the move."""
    client = runtime().redis
    uuids = {json.loads(client.get(keys.host_info(h)))["host_uuid"] for h in ("twin-a", "twin-b")}
    assert uuids == {TWIN_UUID}
    vm = running_vm("twin-a")

    record = migrate(vm["name"], "twin-a", "twin-b", flags=["live"])

    assert record.state == "failed"
    assert record.error["code"] == "SAME_HOST"
    assert "same host" in record.error["message"]
    assert live_copies(vm["uuid"]) == [("twin-a", vm["name"], "running")]


def test_destination_without_room_refuses_prepare(fleet):
    vm = running_vm("pxa", memory_mib=2048)  # 'small' has 1024 MiB in all
    record = migrate(vm["name"], "pxa", "small", flags=["live"])
    assert record.state == "failed"
    assert record.error["code"] == "NO_CAPACITY"
    assert live_copies(vm["uuid"]) == [("pxa", vm["name"], "running")]


def test_second_migration_of_a_busy_domain_is_refused_at_once(fleet):
    vm = running_vm("slow", memory_mib=1024)
    first = submit(MigrationRequest(vm["name"], "slow", "pxb", flags=["live"]))
    with pytest.raises(Refused) as refused:
        submit(MigrationRequest(vm["name"], "slow", "pxa", flags=["live"]))
    assert refused.value.code == "MIGRATION_IN_PROGRESS"
    assert first.id in refused.value.message
    assert wait_terminal(first.id).state == "completed"
    assert domain_on("pxa", vm["name"]) is None


@pytest.fixture(scope="module")
def held_host(fleet):
    """A destination host with one worker thread, so it handles its queue strictly in order, and
    its metrics served; the test holds its queue by cancelling its consumer (remote control)."""
    local = LocalFleet(
        {"VMIGRATE_BROKER_URL": REDIS_URL, **FAST_RECOVERY, "VMIGRATE_WORKER_CONCURRENCY": "1"},
        HOME,
    )
    try:
        port = start_with_metrics(
            local, "fence", lambda p: local.start_host("fence", "--metrics-port", str(p))
        )
        local.wait_ready(runtime().redis, ["fence"])
        yield "fence", port
    finally:
        local.stop_all()


@pytest.fixture
def stale_source_registration(fleet):
    """p2a speaks v1 and v2, but its registration claims v3 too: Begin3 is refused on the host."""
    with helpers.stale_registration("p2a", [1, 2, 3]):
        yield


def ignored_counts(port: int) -> dict[str, float]:
    text = metrics_text(port)
    found = re.findall(
        r'^vmigrate_phase_messages_ignored_total\{reason="([a-z-]+)"\} (\S+)', text, re.M
    )
    return {reason: float(value) for reason, value in found}


def test_stale_messages_do_nothing_while_a_step_of_that_name_is_sent(
    held_host, stale_source_registration
):
    """A v2 migration after a fallback from v3 (Begin3 refused on p2a). While its Perform runs, the
    destination stops consuming; messages that are not the Finish about to be sent reach it
    first, and are judged while that Finish is `sent`: the compensating Finish of the same token
    (obeyed, it would discard the VM the source already handed over), Prepare with Finish's token,
    and Finish of an earlier attempt and of an earlier step. Only fencing stops them."""
    host, port = held_host
    queue, node = host_queue(host), [f"{host}@vmigrate"]
    control = runtime().app.control
    vm = running_vm("p2a", memory_mib=1024)
    # 1024 MiB at 256 MiB/s: Perform lasts about 4 s. Seqs: begin 1 (attempt 1, refused), then
    # attempt 2: dumpxml 2, prepare 3, perform 4, finish 5.
    record = submit(MigrationRequest(vm["name"], "p2a", host, flags=["live"], bandwidth=256))

    def step_is(phase, status):
        r = runtime().store.get(record.id)
        return r if r.step and (r.step.phase, r.step.status) == (phase, status) else None

    wait_until(lambda: step_is("perform", "polling"), "Perform in progress")
    before = ignored_counts(port).get("stale", 0.0)
    replies = control.cancel_consumer(queue, destination=node, reply=True, timeout=10)
    assert replies and "ok" in next(iter(replies[0].values())), replies
    stale = [
        {"attempt": 2, "seq": 5, "phase": "finish", "cancelled": True},
        {"attempt": 2, "seq": 5, "phase": "prepare", "cancelled": False},
        {"attempt": 1, "seq": 5, "phase": "finish", "cancelled": False},
        {"attempt": 2, "seq": 3, "phase": "finish", "cancelled": False},
    ]
    for token in stale:
        send(PHASE_TASK, [{"migration": record.id, **token}], queue)

    held = wait_until(lambda: step_is("finish", "sent"), "Finish sent", timeout=60)
    assert (held.attempt, held.step.seq, held.protocol) == (2, 5, 2)
    # The real Finish waits behind them (a message that met the cancelled consumer is requeued).
    wait_until(lambda: runtime().redis.llen(queue) == len(stale) + 1, "all five messages queued")
    replies = control.add_consumer(queue, destination=node, reply=True, timeout=10)
    assert replies, "the held host did not resume consuming"
    final = wait_terminal(record.id)

    assert final.state == "completed", final.error
    assert [(p.name, p.host, p.version, p.cancelled, p.outcome) for p in final.phases] == [
        ("begin", "p2a", 3, False, "failed"),
        ("dumpxml", "p2a", 2, False, "ok"),
        ("prepare", host, 2, False, "ok"),
        ("perform", "p2a", 2, False, "ok"),
        ("finish", host, 2, False, "ok"),
    ]
    assert ignored_counts(port).get("stale", 0.0) - before == len(stale)
    assert live_copies(vm["uuid"]) == [(host, vm["name"], "running")]
