"""Only the fleet's own components can make a host act: signatures, expiry, single use, JSON only."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kombu import Connection

from broker import keys
from broker.queues import host_queue
from broker.security import Keyring
from tasks.host_commands import call_host
from tasks.publish import CONTROL_TASK, PHASE_TASK, send
from tasks.runtime import runtime
from tests.conftest import REDIS_URL
from tests.helpers import domain_on, finished_tasks, unique, vm_xml, wait_until

HOST = "pxa"


def define_request(name: str) -> tuple[str, list]:
    request_id = unique("req")
    return request_id, [request_id, "define", {"xml": vm_xml(name)}]


def answers(request_id: str) -> int:
    return runtime().redis.llen(keys.reply(request_id))


def answered(request_id: str, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(request_id):
            return True
        time.sleep(0.05)
    return False


def host_drained_its_queue() -> None:
    """A signed probe sent after the message under test, answered: the host's consumer has read
    past it (a message it cannot decode, such as pickle, is dropped as it is read)."""
    probe, args = define_request(unique("probe"))
    send(CONTROL_TASK, args, host_queue(HOST))
    assert answered(probe)


def control_tasks_finished() -> int:
    return finished_tasks(f"{HOST}@vmigrate", CONTROL_TASK)


def refused_by_the_host(publish) -> None:
    """Publish with ``publish()`` and wait until the host has run that task to its end (refused
    or not), so that what did not happen can be checked."""
    before = control_tasks_finished()
    publish()
    wait_until(lambda: control_tasks_finished() > before, "the host finished the task", 15, 0.1)


def publish_raw(task: str, args: list, queue: str, auth=None) -> None:
    kwargs = {} if auth is None else {"auth": auth}
    runtime().app.send_task(task, args=args, kwargs=kwargs, queue=queue)


def test_a_signed_command_is_obeyed(fleet):
    name = unique("signed")
    request_id, args = define_request(name)
    send(CONTROL_TASK, args, host_queue(HOST))
    assert answered(request_id)
    assert domain_on(HOST, name) is not None


def forged_auth(task, queue, args):
    return Keyring("local", {"local": b"f" * 64}).sign(task, queue, args, 600)


def genuine_auth(task, queue, args, ttl=600.0):
    return runtime().keyring.sign(task, queue, args, ttl)


@pytest.mark.parametrize(
    "how",
    [
        "unsigned",
        "forged key",
        "unknown key id",
        "sent to another host",
        "other task",
        "altered arguments",
        "expired",
    ],
)
def test_unauthentic_commands_change_nothing(fleet, how):
    name = unique("evil")
    request_id, args = define_request(name)
    queue = host_queue(HOST)
    auth = {
        "unsigned": None,
        "forged key": forged_auth(CONTROL_TASK, queue, args),
        "unknown key id": {**genuine_auth(CONTROL_TASK, queue, args), "kid": "stolen"},
        "sent to another host": genuine_auth(CONTROL_TASK, host_queue("pxb"), args),
        "other task": genuine_auth(PHASE_TASK, queue, args),
        "altered arguments": genuine_auth(CONTROL_TASK, queue, define_request(name)[1]),
        "expired": genuine_auth(CONTROL_TASK, queue, args, ttl=-1),
    }[how]
    refused_by_the_host(lambda: publish_raw(CONTROL_TASK, args, queue, auth))
    assert answers(request_id) == 0
    assert domain_on(HOST, name) is None


def test_a_replayed_command_is_refused(fleet):
    name = unique("replay")
    request_id, args = define_request(name)
    auth = genuine_auth(CONTROL_TASK, host_queue(HOST), args)
    publish_raw(CONTROL_TASK, args, host_queue(HOST), auth)
    assert answered(request_id)
    # The captured message, again:
    refused_by_the_host(lambda: publish_raw(CONTROL_TASK, args, host_queue(HOST), auth))
    assert answers(request_id) == 1


def test_pickle_is_refused_and_the_worker_survives(fleet, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    with Connection(REDIS_URL) as conn:
        producer = conn.Producer(serializer="pickle")
        producer.publish(
            {"task": CONTROL_TASK, "args": [Exploit()]},
            routing_key=host_queue(HOST),
            headers={"task": CONTROL_TASK, "id": unique("pickle")},
        )
    host_drained_its_queue()
    assert not marker.exists()
    name = unique("after-pickle")
    call_host(HOST, "define", {"xml": vm_xml(name)})  # still alive, still obeys the fleet
    assert json.loads(json.dumps(domain_on(HOST, name)))["name"] == name
