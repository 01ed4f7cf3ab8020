"""A fault in each phase of each version leaves the VM live on exactly one host, truthfully recorded.

Where the VM must be after the failure follows libvirt: the source, unless the destination already
owns it (v1/v2 once Perform succeeded, v3 once Finish succeeded). A failed v3 Confirm rolls forward:
the destination runs the VM, so the source copy is ended by force and the migration completes.
"""

from __future__ import annotations

import pytest

from tasks.host_commands import call_host
from tests.helpers import live_copies, migrate, running_vm, unique, vm_xml

PAIRS = {1: ("p1a", "p1b"), 2: ("p2a", "p2b"), 3: ("p3a", "p3b")}
# (version, phase) -> (final state, where the VM lives, its state there)
OUTCOMES = {
    (1, "prepare"): ("failed", "source", "running"),
    (1, "perform"): ("failed", "source", "running"),
    (1, "finish"): ("failed", "destination", "paused"),
    (2, "prepare"): ("failed", "source", "running"),
    (2, "perform"): ("failed", "source", "running"),
    (2, "finish"): ("failed", "destination", "paused"),
    (3, "begin"): ("failed", "source", "running"),
    (3, "prepare"): ("failed", "source", "running"),
    (3, "perform"): ("failed", "source", "running"),
    (3, "finish"): ("failed", "source", "running"),
    (3, "confirm"): ("completed", "destination", "running"),
}


@pytest.mark.parametrize(
    ("version", "phase"), list(OUTCOMES), ids=[f"v{v}-{p}" for v, p in OUTCOMES]
)
def test_fault_leaves_one_live_copy(fleet, version, phase):
    source, destination = PAIRS[version]
    name = unique("faulty")
    if (version, phase) == (1, "prepare"):
        # v1's Prepare sees only the name: make it fail the way it really can, on a name clash.
        vm = running_vm(source, name)
        call_host(destination, "define", {"xml": vm_xml(name)})
        call_host(destination, "start", {"name": name})
    else:
        vm = running_vm(source, name, faults=(phase,))

    record = migrate(name, source, destination, flags=["live"])

    state, owner, vm_state = OUTCOMES[(version, phase)]
    host = source if owner == "source" else destination
    assert record.state == state
    assert record.protocol == version
    assert record.vm_host == host
    assert live_copies(vm["uuid"]) == [(host, name, vm_state)]
    failed = [p for p in record.phases if p.outcome == "failed"]
    assert failed[0].name == phase and failed[0].error["message"]
    if state == "failed":
        assert record.error["code"] and record.error["message"]
    else:
        assert any("confirm" in w for w in record.warnings)
