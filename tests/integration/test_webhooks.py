"""Webhooks end to end: a migration's callback and the standing subscription receive each state
change from the real dispatchers, signed, in order, each with its event id; a receiver that is
down for a while gets them later, in order; a callback outside the allow-list is refused."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
import time

import pytest

from tests.conftest import WEBHOOK_ALL, WEBHOOK_SECRET
from tests.helpers import running_vm, wait_until
from tests.webhook_receiver import Delivery, Receiver
from vmigrate.client import Client, Refused

TOKEN = "test-token-1"


def states_in_stream(client: Client, migration_id: str) -> list[tuple[str, str]]:
    """(event id, state) of the migration, as the API's events list has them."""
    return [
        (e["event"], e["state"])
        for e in client.events(since="0", limit=10000)
        if e["id"] == migration_id
    ]


def received(receiver: Receiver, path: str, migration_id: str, final: str) -> list[Delivery]:
    """The deliveries of the migration to ``path``, once its final state has arrived."""

    def arrived() -> list[Delivery] | None:
        got = receiver.events_of(path, migration_id)
        return got if any(d.event["state"] == final for d in got) else None

    return wait_until(arrived, f"the {final} delivery at {path}", timeout=60)


def signed_by_the_secret(delivery: Delivery) -> bool:
    """The documented check, written as another language would: HMAC-SHA256 of "t.body"."""
    fields = dict(p.split("=", 1) for p in delivery.headers["X-Vmigrate-Signature"].split(","))
    signed = fields["t"].encode() + b"." + delivery.body
    expected = hmac.new(WEBHOOK_SECRET.encode(), signed, hashlib.sha256).hexdigest()
    recent = abs(time.time() - int(fields["t"])) < 300
    return recent and hmac.compare_digest(fields["v1"], expected)


def unique_in_order(deliveries: list[Delivery]) -> list[tuple[str, str]]:
    """(event id, state) in arrival order, duplicates dropped by event id as a receiver would."""
    seen: dict[str, str] = {}
    for d in deliveries:
        seen.setdefault(d.headers["X-Vmigrate-Event"], d.event["state"])
    return list(seen.items())


def test_each_state_change_reaches_the_callback_signed_and_in_order(api, webhook_receiver):
    client = Client(api, TOKEN)
    vm = running_vm("pxa")
    hook = "/hooks/test-order"
    created = client.migrate(
        vm["name"], "pxa", "pxb", live=True, callback=webhook_receiver.url(hook)
    )
    assert created["callback"] == webhook_receiver.url(hook)
    assert client.wait(created["id"], timeout=60)["state"] == "completed"
    expected = states_in_stream(client, created["id"])
    assert [s for _, s in expected][-1] == "completed" and len(expected) >= 5

    for path in (hook, WEBHOOK_ALL):
        deliveries = received(webhook_receiver, path, created["id"], "completed")
        assert unique_in_order(deliveries) == expected, path  # every change, in order
        assert all(signed_by_the_secret(d) for d in deliveries)
        assert all(d.headers["X-Vmigrate-Event"] == d.event["event"] for d in deliveries)
        assert deliveries[-1].event["domain"] == vm["name"]
        assert deliveries[-1].event["destination"] == "pxb"


def test_a_receiver_down_for_a_while_gets_every_change_later_in_order(api, webhook_receiver):
    client = Client(api, TOKEN)
    vm = running_vm("pxa")
    hook = "/hooks/test-down"
    webhook_receiver.down()
    try:
        created = client.migrate(
            vm["name"], "pxa", "pxb", live=True, callback=webhook_receiver.url(hook)
        )
        final = client.wait(created["id"], timeout=60)
        assert final["state"] == "completed"  # the migration never waited for its receiver
        time.sleep(3)  # down a while longer: several attempts are refused
    finally:
        back = time.time()
        webhook_receiver.failing = 2  # and its first two answers back are 503s
        webhook_receiver.up()
    deliveries = received(webhook_receiver, hook, created["id"], "completed")
    assert all(d.at >= back for d in deliveries)
    assert unique_in_order(deliveries) == states_in_stream(client, created["id"])
    assert all(signed_by_the_secret(d) for d in deliveries)


@pytest.mark.parametrize(
    ("callback", "code"),
    [
        ("http://127.0.0.1:6379/", "CALLBACK_NOT_ALLOWED"),  # the broker
        ("http://169.254.169.254/latest/meta-data/", "CALLBACK_NOT_ALLOWED"),
        ("http://127.0.0.1:{port}/hooksevil", "CALLBACK_NOT_ALLOWED"),
        ("http://127.0.0.1:{port}/hooks/../admin", "INVALID_CALLBACK"),
        ("file:///etc/passwd", "INVALID_CALLBACK"),
    ],
)
def test_a_callback_outside_the_allow_list_is_refused_at_submission(
    api, webhook_receiver, callback, code
):
    client = Client(api, TOKEN)
    vm = running_vm("pxa")
    url = callback.format(port=webhook_receiver.port)
    with pytest.raises(Refused) as refused:
        client.migrate(vm["name"], "pxa", "pxb", live=True, callback=url)
    assert refused.value.code == code and refused.value.status == 400
    assert client.migrations(domain=vm["name"]) == []  # nothing recorded, nothing ran

    args = ["migrate", vm["name"], "--from", "pxa", "--to", "pxb", "--callback", url]
    cli = subprocess.run(
        [sys.executable, "-m", "vmigrate.cli", *args], capture_output=True, text=True, timeout=60
    )
    assert cli.returncode == 2 and f"[{code}]" in cli.stderr
    assert client.migrations(domain=vm["name"]) == []
