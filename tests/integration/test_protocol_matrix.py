"""Every pair of {v1-only, v2-only, v3-only, v1+v2+v3} hosts, with and without a rename.

Each case either completes with the highest version both hosts support, or is refused before
anything runs (no common version, or a rename that v1 cannot carry) and touches neither host.
"""

from __future__ import annotations

import itertools

import pytest

from tasks.errors import Refused
from tests.helpers import domain_on, live_copies, migrate, running_vm, unique

KINDS = {
    "v1": ("p1a", "p1b", {1}),
    "v2": ("p2a", "p2b", {2}),
    "v3": ("p3a", "p3b", {3}),
    "all": ("pxa", "pxb", {1, 2, 3}),
}
CASES = [(s, d, rename) for s, d in itertools.product(KINDS, KINDS) for rename in (False, True)]


def expected(src: set[int], dst: set[int], rename: bool) -> int | str:
    common = src & dst
    if not common:
        return "NO_COMMON_PROTOCOL"
    best = max(common)
    if rename and best == 1:
        return "DNAME_UNSUPPORTED"
    return best


@pytest.mark.parametrize(
    ("src_kind", "dst_kind", "rename"),
    CASES,
    ids=[f"{s}-to-{d}{'-dname' if r else ''}" for s, d, r in CASES],
)
def test_version_chosen_or_refused_early(fleet, src_kind, dst_kind, rename):
    source, _, src_versions = KINDS[src_kind]
    _, destination, dst_versions = KINDS[dst_kind]
    vm = running_vm(source)
    dname = unique("renamed") if rename else None
    want = expected(src_versions, dst_versions, rename)

    if isinstance(want, str):
        with pytest.raises(Refused) as refused:
            migrate(vm["name"], source, destination, dname=dname, flags=["live"])
        assert refused.value.code == want
        assert domain_on(source, vm["name"])["state"] == "running"
        assert domain_on(destination, dname or vm["name"]) is None
        return

    record = migrate(vm["name"], source, destination, dname=dname, flags=["live"])
    assert record.state == "completed", record.error
    assert record.protocol == want
    names = [p.name for p in record.phases]
    assert (
        names
        == {
            1: ["prepare", "perform", "finish"],
            2: ["dumpxml", "prepare", "perform", "finish"],
            3: ["begin", "prepare", "perform", "finish", "confirm"],
        }[want]
    )
    assert all(p.outcome == "ok" and p.started and p.ended for p in record.phases)
    assert live_copies(vm["uuid"]) == [(destination, dname or vm["name"], "running")]


def test_offline_v3_moves_the_definition_of_a_shut_off_domain_and_nothing_runs(fleet):
    from tasks.host_commands import call_host
    from tests.helpers import vm_xml, wait_terminal

    name = unique("offline")
    call_host("p3a", "define", {"xml": vm_xml(name)})
    record = migrate(name, "p3a", "p3b", flags=["offline", "persist", "undefine_source"])
    final = wait_terminal(record.id)
    assert final.state == "completed", final.error
    assert [p.name for p in final.phases] == ["begin", "prepare", "finish", "confirm"]
    moved = domain_on("p3b", name)
    assert moved is not None and moved["state"] == "shutoff" and moved["persistent"]
    assert domain_on("p3a", name) is None, "--undefine-source removed the source's definition"
