"""Windows, deadlines, admission limits under concurrency, priority, cancel, evacuation, events."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from broker import keys
from broker.queues import DISPATCHER
from tasks.admission import slot_holders
from tasks.cancel import request_cancel
from tasks.errors import Refused
from tasks.evacuation import evacuate, set_drained
from tasks.publish import SUBMIT_TASK, send
from tasks.release_rules import load_windows
from tasks.runtime import runtime
from tasks.scheduler import tick
from tasks.submission import MigrationRequest, submit
from tasks.windows import next_open
from tests.helpers import (
    V3_STATES,
    domain_on,
    live_copies,
    max_in_flight,
    running_vm,
    scheduler_rounds_pass,
    wait_terminal,
    wait_until,
)

LIMITS = {"out": 2, "in": 2, "fleet": 5}


def in_closed_window() -> dt.datetime:
    window = load_windows(runtime().settings.windows)["closed"]
    return next_open(window, dt.datetime.now(dt.UTC)) + dt.timedelta(seconds=5)


def tick_until_done(ids, now, timeout=120.0):
    """Be the scheduler at ``now`` (inside the window) until every migration ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tick(now=now)
        records = [runtime().store.get(i) for i in ids]
        if all(r.terminal for r in records):
            return records
        time.sleep(0.05)
    raise AssertionError(f"not all ended within {timeout} s: {[r.state for r in records]}")


def test_queued_until_its_window_opens(fleet):
    vm = running_vm("pxa")
    record = submit(MigrationRequest(vm["name"], "pxa", "pxb", flags=["live"], window="closed"))
    assert record.state == "queued"
    scheduler_rounds_pass()  # dispatchers tick on real time: the window is closed, nothing starts
    assert runtime().store.get(record.id).state == "queued"
    assert domain_on("pxa", vm["name"])["state"] == "running"

    tick(now=in_closed_window())  # the scheduler, at a moment inside the window

    final = wait_terminal(record.id)
    assert final.state == "completed"
    assert live_copies(vm["uuid"]) == [("pxb", vm["name"], "running")]


def test_a_window_that_misses_the_deadline_expires_with_a_reason(fleet):
    vm = running_vm("pxa")
    deadline = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).isoformat()
    record = submit(MigrationRequest(vm["name"], "pxa", "pxb", window="closed", deadline=deadline))
    final = wait_terminal(record.id, timeout=10)
    assert final.state == "expired"
    assert final.error["code"] == "WINDOW_MISSES_DEADLINE"
    assert "does not open before the deadline" in final.error["message"]
    assert domain_on("pxa", vm["name"])["state"] == "running"


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"window": "nope"}, "UNKNOWN_WINDOW"),
        ({"deadline": "2020-01-01T00:00:00+00:00"}, "DEADLINE_PASSED"),
        ({"not_before": "tomorrow"}, "INVALID_TIME"),
        ({"not_before": "2030-01-01T00:00:00"}, "INVALID_TIME"),
        ({"priority": 10**6}, "INVALID_PRIORITY"),
    ],
)
def test_bad_scheduling_options_are_refused(fleet, options, code):
    vm = running_vm("pxa")
    with pytest.raises(Refused) as refused:
        submit(MigrationRequest(vm["name"], "pxa", "pxb", **options))
    assert refused.value.code == code


def test_limits_hold_when_ticks_and_dispatchers_hammer_admission(fleet):
    sources = ["pxa", "pxb", "p3a", "p3b"]
    ids = []
    for i in range(24):
        src = sources[i % 4]
        dst = (
            sources[(i + 1 + i // 4) % 4]
            if sources[(i + 1 + i // 4) % 4] != src
            else sources[(i + 2) % 4]
        )
        vm = running_vm(src, memory_mib=256)
        ids.append(
            submit(
                MigrationRequest(
                    vm["name"], src, dst, flags=["live"], bandwidth=512, window="closed"
                )
            ).id
        )
    now = in_closed_window()
    seen = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.append(list(slot_holders(runtime().redis).values()))

    def hammer():
        while not stop.is_set():
            tick(now=now)

    watcher = threading.Thread(target=watch)
    workers = [threading.Thread(target=hammer) for _ in range(4)]
    watcher.start()
    for w in workers:
        w.start()
    finals = [wait_terminal(i, timeout=120) for i in ids]
    stop.set()
    for t in [watcher, *workers]:
        t.join()

    assert all(f.state == "completed" for f in finals), [f.error for f in finals]
    for slots in seen:
        assert len(slots) <= LIMITS["fleet"]
        for host in sources:
            assert sum(s["source"] == host for s in slots) <= LIMITS["out"]
            assert sum(s["destination"] == host for s in slots) <= LIMITS["in"]
    peak, peak_out, peak_in = max_in_flight(finals)
    assert peak <= LIMITS["fleet"] and max(peak_out.values()) <= 2 and max(peak_in.values()) <= 2
    assert peak >= 3  # they did run concurrently: the limits were exercised, not idle


def test_higher_priority_starts_first(fleet):
    entries = []
    for priority in (0, 5, 10, 1):
        vm = running_vm("slow", memory_mib=256)
        entries.append(
            (
                priority,
                submit(
                    MigrationRequest(
                        vm["name"],
                        "slow",
                        "pxb",
                        flags=["live"],
                        priority=priority,
                        window="closed",
                    )
                ).id,
            )
        )
    done = tick_until_done([i for _, i in entries], in_closed_window())
    finals = {p: r for (p, _), r in zip(entries, done, strict=True)}
    starts = sorted(finals, key=lambda p: finals[p].phases[0].started)
    assert set(starts[:2]) == {10, 5}  # slow's outbound limit is 2: the two highest went first
    assert all(f.state == "completed" for f in finals.values())


def test_cancel_in_every_state(fleet):
    queued_vm = running_vm("pxa")
    queued = submit(MigrationRequest(queued_vm["name"], "pxa", "pxb", window="closed"))
    assert request_cancel(queued.id).state == "cancelled"
    assert not runtime().redis.hexists(keys.queue(), queued.id)

    vm = running_vm("slow", memory_mib=2048)  # 8 s on slow's link
    running = submit(MigrationRequest(vm["name"], "slow", "pxb", flags=["live"]))
    wait_until(lambda: runtime().store.get(running.id).state == "perform", "Perform running")
    request_cancel(running.id)
    final = wait_terminal(running.id)
    assert final.state == "cancelled"
    assert final.error["code"] == "CANCELLED"
    assert [p.name for p in final.phases][-1] == "finish" and final.phases[-1].cancelled
    assert live_copies(vm["uuid"]) == [("slow", vm["name"], "running")]
    assert domain_on("pxb", vm["name"]) is None

    done = request_cancel(running.id)  # already terminal: nothing changes
    assert done.state == "cancelled"


def test_evacuation_moves_every_vm_within_the_limits(fleet):
    vms = [running_vm("evac", memory_mib=512) for _ in range(7)]
    set_drained("evac", True)
    try:
        with pytest.raises(Refused) as refused:
            submit(MigrationRequest(running_vm("pxa")["name"], "pxa", "evac"))
        assert refused.value.code == "HOST_DRAINING"
        items = evacuate("evac", to=["pxa", "pxb", "p3a"])
        finals = [wait_terminal(i["id"], timeout=120) for i in items]
    finally:
        set_drained("evac", False)
    assert len(items) == 7 and all(f.state == "completed" for f in finals)
    assert {i["destination"] for i in items} <= {"pxa", "pxb", "p3a"}  # only where it was told
    for vm in vms:
        ((host, _, state),) = live_copies(vm["uuid"])
        assert host != "evac" and state == "running"
    peak, peak_out, _ = max_in_flight(finals)
    assert peak_out["evac"] <= 2 and peak <= 5


def test_events_stream_every_state_change(fleet):
    last = runtime().redis.xrevrange(keys.events(), count=1)
    since = last[0][0] if last else "0"
    vm = running_vm("p3a")
    record = submit(MigrationRequest(vm["name"], "p3a", "p3b", flags=["live"]))
    wait_terminal(record.id)
    entries = runtime().redis.xread({keys.events(): since}, count=10000)[0][1]
    states = [f["state"] for _, f in entries if f["id"] == record.id]
    # Nothing waited and a slot was free: the record was born pending (no "waiting" event).
    assert states == V3_STATES


def test_celery_entry_point_for_other_applications(fleet):
    vm = running_vm("pxa")
    send(
        SUBMIT_TASK,
        [
            {
                "domain": vm["name"],
                "source": "pxa",
                "destination": "pxb",
                "flags": ["live"],
                "id": "from-another-app-1",
            }
        ],
        DISPATCHER,
    )
    wait_until(lambda: runtime().store.get("from-another-app-1"), "the request recorded")
    assert wait_terminal("from-another-app-1").state == "completed"
