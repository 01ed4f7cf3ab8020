"""The admission script on a redis-server of its own: what it admits, in which order, and what it
leaves waiting, for each limit."""

from __future__ import annotations

import json

import pytest

from broker import keys
from tasks.admission import Candidate, Limits, release_slot, slot_holders, take_slots
from tests.conftest import require_redis
from tests.redis_server import private_redis


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_redis()
    with private_redis(tmp_path_factory.mktemp("admission")) as (_port, client):
        yield client


@pytest.fixture
def client(server):
    server.flushdb()
    return server


LIMITS = Limits(outbound_per_host=2, inbound_per_host=2, fleet=5)


def c(id_: str, source: str = "a", destination: str = "b", bandwidth: int = 0) -> Candidate:
    return Candidate(id_, source, destination, bandwidth=bandwidth, created=1.0)


def test_admits_in_the_given_order_up_to_the_outbound_limit(client):
    admitted = take_slots(
        client, [c("m3", destination="x"), c("m1", destination="y"), c("m2")], LIMITS
    )
    assert admitted == ["m3", "m1"]  # a's two outbound slots
    holders = slot_holders(client)
    assert set(holders) == {"m3", "m1"}
    assert holders["m3"] == {
        "id": "m3",
        "source": "a",
        "destination": "x",
        "bandwidth": 0,
        "priority": 0,
        "created": 1.0,
    }


def test_the_inbound_limit_and_later_candidates_that_fit(client):
    ordered = [c("i1", "a", "b"), c("i2", "c", "b"), c("i3", "d", "b"), c("i4", "e", "f")]
    assert take_slots(client, ordered, LIMITS) == ["i1", "i2", "i4"]


def test_the_fleet_limit_counts_what_already_runs(client):
    assert take_slots(client, [c("f1", "a", "b"), c("f2", "c", "d")], LIMITS) == ["f1", "f2"]
    more = [c(f"g{i}", f"s{i}", f"d{i}") for i in range(5)]
    assert take_slots(client, more, LIMITS) == ["g0", "g1", "g2"]
    assert take_slots(client, [c("h", "s9", "d9")], LIMITS) == []


def test_a_migration_holding_a_slot_is_not_admitted_twice(client):
    assert take_slots(client, [c("twice", "a", "b")], LIMITS) == ["twice"]
    assert take_slots(client, [c("twice", "a", "b")], LIMITS) == []
    assert len(slot_holders(client)) == 1


def test_admitted_migrations_leave_the_queue(client):
    client.hset(keys.queue(), mapping={"q1": "{}", "q2": "{}"})
    assert take_slots(client, [c("q1")], LIMITS) == ["q1"]
    assert client.hkeys(keys.queue()) == ["q2"]


def test_only_if_the_queue_is_empty(client):
    client.hset(keys.queue(), "someone-waits", "{}")
    assert take_slots(client, [c("eager")], LIMITS, only_if_queue_empty=True) == []
    assert take_slots(client, [c("eager")], LIMITS, only_if_queue_empty=False) == ["eager"]
    client.delete(keys.queue())
    assert take_slots(client, [c("next", "x", "y")], LIMITS, only_if_queue_empty=True) == ["next"]


def test_a_bandwidth_budget_on_both_ends(client):
    budget = Limits(outbound_per_host=5, inbound_per_host=5, fleet=10, bandwidth_per_host=300)
    out = [c("o1", "a", "b1", 200), c("o2", "a", "b2", 200), c("o3", "a", "b3", 100)]
    assert take_slots(client, out, budget) == ["o1", "o3"]  # a sends 300 MiB/s at most
    inn = [c("n1", "x1", "z", 250), c("n2", "x2", "z", 100), c("n3", "x3", "z", 50)]
    assert take_slots(client, inn, budget) == ["n1", "n3"]  # z receives 300 MiB/s at most
    reserved = {k: v["bandwidth"] for k, v in slot_holders(client).items()}
    assert reserved == {"o1": 200, "o3": 100, "n1": 250, "n3": 50}


def test_uncapped_migrations_reserve_an_equal_share(client):
    budget = Limits(outbound_per_host=3, inbound_per_host=5, fleet=10, bandwidth_per_host=300)
    ordered = [c(f"u{i}", "a", f"b{i}") for i in range(4)]
    assert take_slots(client, ordered, budget) == ["u0", "u1", "u2"]
    assert {v["bandwidth"] for v in slot_holders(client).values()} == {100}


def test_release_frees_the_slot_once(client):
    take_slots(client, [c("r1"), c("r2")], LIMITS)
    assert take_slots(client, [c("r3")], LIMITS) == []
    assert release_slot(client, "r1") is True
    assert release_slot(client, "r1") is False
    assert take_slots(client, [c("r3")], LIMITS) == ["r3"]
    assert json.loads(client.hget(keys.slots(), "r3"))["id"] == "r3"
