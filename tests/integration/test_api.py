"""The REST API end to end: a real ``vmigrate api`` process, real workers, the Python client."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from tests.helpers import running_vm
from vmigrate.client import ERRORS, APIError, Client


def test_create_read_list_and_show_agree(api):
    client = Client(api, "test-token-2")
    vm = running_vm("pxa")
    created = client.migrate(vm["name"], "pxa", "pxb", live=True, persist=True)
    assert created["id"] and created["state"] in ("waiting", "pending", "begin")
    final = client.wait(created["id"], timeout=60)
    assert final["state"] == "completed" and final["protocol"] == 3
    shown = subprocess.run(
        [sys.executable, "-m", "vmigrate.cli", "show", created["id"], "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(shown.stdout) == final
    listed = client.migrations(domain=vm["name"], state="completed")
    assert [r["id"] for r in listed] == [created["id"]]
    assert {"pxa", "pxb"} <= {h["name"] for h in client.hosts()}


def test_cancel_and_evacuate_through_the_api(api):
    client = Client(api, "test-token-1")
    vm = running_vm("pxa")
    queued = client.migrate(vm["name"], "pxa", "pxb", window="closed")
    assert queued["state"] == "queued"
    assert client.cancel(queued["id"])["state"] == "cancelled"
    with pytest.raises(APIError) as unknown:
        client.evacuate("nowhere-host")
    assert unknown.value.status == 404

    for _ in range(2):
        running_vm("evac")
    answer = client.evacuate("evac", to=["pxb"])
    ids = [m["id"] for m in answer["migrations"]]
    assert len(ids) >= 2 and all(ids)
    assert all(client.wait(i)["state"] == "completed" for i in ids)


def test_events_can_be_read_from_a_point(api):
    client = Client(api, "test-token-1")
    first = client.events(limit=1)
    vm = running_vm("p3a")
    created = client.migrate(vm["name"], "p3a", "p3b")
    client.wait(created["id"])
    later = client.events(since=first[0]["event"] if first else "0", limit=10000)
    assert "completed" in [e["state"] for e in later if e["id"] == created["id"]]


@pytest.mark.parametrize("since", ["18446744073709551616-0", "1-18446744073709551616"])
def test_an_events_position_past_redis_64_bits_is_a_400_not_a_500(api, since):
    with pytest.raises(APIError) as error:
        Client(api, "test-token-1").events(since=since)
    assert (error.value.status, error.value.code) == (400, "INVALID_SINCE")


@pytest.mark.parametrize(
    ("token", "body", "status", "code"),
    [
        ("wrong", {"domain": "x", "source": "pxa", "destination": "pxb"}, 401, "UNAUTHORIZED"),
        ("", {"domain": "x", "source": "pxa", "destination": "pxb"}, 401, "UNAUTHORIZED"),
        ("test-token-1", {"domain": "x"}, 422, "INVALID_REQUEST"),
        (
            "test-token-1",
            {"domain": "x", "source": "pxa", "destination": "pxb", "evil": 1},
            422,
            "INVALID_REQUEST",
        ),
        (
            "test-token-1",
            {"domain": "x", "source": "pxa", "destination": "pxb", "bandwidth": -5},
            422,
            "INVALID_REQUEST",
        ),
        (
            "test-token-1",
            {"domain": "x", "source": "pxa", "destination": "pxb", "bandwidth": 10**12},
            422,
            "INVALID_REQUEST",
        ),
        (
            "test-token-1",
            {"domain": "../../etc", "source": "pxa", "destination": "pxb"},
            400,
            "INVALID_NAME",
        ),
        (
            "test-token-1",
            {"domain": "x", "source": "nowhere", "destination": "pxb"},
            404,
            "HOST_UNKNOWN",
        ),
        (
            "test-token-1",
            {"domain": "x", "source": "pxa", "destination": "pxb", "flags": ["fly"]},
            400,
            "UNKNOWN_FLAG",
        ),
        (  # the sim driver copies no disks: refused at submission, by name
            "test-token-1",
            {"domain": "x", "source": "pxa", "destination": "pxb", "copy-storage-all": True},
            400,
            "STORAGE_MIGRATION_UNSUPPORTED",
        ),
        (
            "test-token-1",
            {"domain": "x", "source": "pxa", "destination": "pxb", "migrate-disks": ["vda"]},
            400,
            "INVALID_FLAGS",
        ),
        (
            "test-token-1",
            {
                "domain": "x",
                "source": "pxa",
                "destination": "pxb",
                "copy-storage-all": True,
                "copy-storage-inc": True,
            },
            400,
            "INVALID_FLAGS",
        ),
        (
            "test-token-1",
            {"domain": "x", "source": "pxa", "destination": "pxb", "migrate-disks": ["../x"]},
            400,
            "INVALID_REQUEST",
        ),
        (
            "test-token-1",
            {"domain": "x", "source": "pxa", "destination": "pxb", "xml": "<a><b></a>"},
            400,
            "INVALID_XML",
        ),
        (
            "test-token-1",
            {
                "domain": "x",
                "source": "pxa",
                "destination": "pxb",
                "xml": '<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><domain>&x;</domain>',
            },
            400,
            "INVALID_XML",
        ),
    ],
)
def test_bad_input_gets_a_clear_4xx(api, token, body, status, code):
    with pytest.raises(APIError) as error:
        Client(api, token)._call("POST", "/v1/migrations", body)
    assert error.value.status == status and error.value.code == code and error.value.message
    assert isinstance(error.value, ERRORS[status]), "a typed error for each status"


def test_unknown_migration_is_404_and_openapi_is_served(api):
    with pytest.raises(APIError) as error:
        Client(api, "test-token-1").get("no-such-id")
    assert error.value.status == 404
    document = json.loads(urllib.request.urlopen(api + "/openapi.json").read())
    assert {"/v1/migrations", "/v1/migrations/{migration_id}", "/v1/hosts"} <= set(
        document["paths"]
    )


def test_the_openapi_document_describes_the_error_model_and_the_bearer_scheme(api):
    document = json.loads(urllib.request.urlopen(api + "/openapi.json").read())
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    error = {"$ref": "#/components/schemas/ErrorOut"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            assert operation.get("security"), f"{where} names the bearer scheme"
            for status in ("401", "422"):
                content = operation["responses"][status]["content"]["application/json"]
                assert content["schema"] == error, (where, status)
    create = document["paths"]["/v1/migrations"]["post"]["responses"]
    assert {"202", "400", "404", "409"} <= set(create)
