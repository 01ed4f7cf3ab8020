"""A property-based fuzzer over the live REST API, driven by the API's own OpenAPI document
(schemathesis), with the session's real workers behind it: no server error, no answer the
document does not describe, authentication enforced on every operation."""

from __future__ import annotations

from collections.abc import Callable

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.helpers import running_vm
from vmigrate.client import Client

TOKEN = {"Authorization": "Bearer test-token-1"}
#: What the contract promises: never a 5xx, only documented status codes, content types and
#: bodies, malformed input refused, and no operation answering without a valid token.
#: (schemathesis's ``positive_data_acceptance`` is left out: a schema-valid request may still be
#: refused by a rule of the fleet, ``SAME_HOST`` or ``HOST_DOWN``, with a documented 400.)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]
EXAMPLES = 60


STREAM = "/v1/events/stream"


def ending(done: str) -> Callable[[schemathesis.Case], schemathesis.Case]:
    """The events stream runs until the client leaves; a fuzzed request that names no
    migration follows ``done``, which has ended, so its stream ends too."""

    def pin(case: schemathesis.Case) -> schemathesis.Case:
        if case.operation.path == STREAM and not (case.query or {}).get("migration"):
            case.query = {**(case.query or {}), "migration": done}
        return case

    return pin


def test_every_operation_holds_under_a_fuzzer(api: str) -> None:
    client = Client(api, "test-token-1")
    vm = running_vm("pxa")
    done = client.wait(client.migrate(vm["name"], "pxa", "pxb", live=True)["id"])["id"]
    schema = schemathesis.openapi.from_url(api + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8, "every operation of the document is fuzzed"
    for operation in operations:

        @given(case=operation.as_strategy().map(ending(done)))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def holds(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=TOKEN, checks=CHECKS)

        holds()
