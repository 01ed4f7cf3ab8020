"""The ``vmigrate`` command as other programs and people use it: JSON shapes and exit codes."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import FLEET_HOSTS
from tests.helpers import running_vm, unique, vm_xml

STATES = {"running", "paused", "shutoff"}


def vmigrate(
    *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "vmigrate.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"vmigrate {args} exited {result.returncode}: {result.stderr}")
    return result


def iso_utc(text: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed.utcoffset() == dt.timedelta(0)
    return parsed


def test_hosts_json(fleet):
    hosts = json.loads(vmigrate("hosts", "--json").stdout)
    by_name = {h["name"]: h for h in hosts}
    assert by_name["p1a"]["protocols"] == [1]
    assert by_name["pxa"]["protocols"] == [1, 2, 3]
    # The session's fleet (other tests add and stop hosts of their own, in any order):
    assert all(by_name[h]["driver"] == "sim" and by_name[h]["alive"] is True for h in FLEET_HOSTS)
    documented = {"name", "protocols", "driver", "alive", "memory_mib", "vcpus", "host_uuid"}
    assert all(set(h) >= documented | {"version", "registered"} for h in hosts)


def test_define_start_domains_and_dumpxml(fleet, tmp_path):
    name = unique("cli")
    path = tmp_path / "vm.xml"
    path.write_text(vm_xml(name, memory_mib=128))
    out = vmigrate("define", "pxa", str(path), "--start").stdout
    assert f"Domain '{name}' defined on pxa" in out and "started" in out

    domains = json.loads(vmigrate("domains", "pxa", "--json").stdout)
    mine = next(d for d in domains if d["name"] == name)
    assert mine["state"] == "running" and len(mine["uuid"]) == 36
    assert all(d["state"] in STATES for d in domains)
    assert f"<name>{name}</name>" in vmigrate("dumpxml", "pxa", name).stdout


def test_migrate_wait_json_and_show(fleet):
    vm = running_vm("pxa")
    result = vmigrate(
        "migrate",
        vm["name"],
        "--from",
        "pxa",
        "--to",
        "pxb",
        "--live",
        "--persist",
        "--wait",
        "--json",
    )
    record = json.loads(result.stdout)
    assert record["state"] == "completed" and record["protocol"] == 3
    assert {
        "id",
        "domain",
        "source",
        "destination",
        "dname",
        "protocol",
        "state",
        "phases",
        "error",
    } <= set(record)
    assert record["error"] is None and record["dname"] is None
    for phase in record["phases"]:
        assert {"name", "host", "started", "ended", "outcome"} <= set(phase)
        assert iso_utc(phase["started"]) <= iso_utc(phase["ended"])
    assert [p["host"] for p in record["phases"]] == ["pxa", "pxb", "pxa", "pxb", "pxa"]

    shown = json.loads(vmigrate("show", record["id"], "--json").stdout)
    assert shown == record
    listed = json.loads(vmigrate("list", "--json").stdout)
    assert record["id"] in [r["id"] for r in listed]
    on_b = json.loads(vmigrate("domains", "pxb", "--json").stdout)
    assert [d["state"] for d in on_b if d["name"] == vm["name"]] == ["running"]


def test_migrate_without_wait_prints_the_id_at_once(fleet):
    vm = running_vm("pxa")
    migration_id = vmigrate("migrate", vm["name"], "--from", "pxa", "--to", "pxb").stdout.strip()
    assert len(migration_id) == 36
    shown = vmigrate("show", migration_id).stdout
    assert migration_id in shown and vm["name"] in shown


def test_failed_migration_exits_one_with_the_error(fleet):
    vm = running_vm("p3a", faults=("perform",))
    result = vmigrate(
        "migrate",
        vm["name"],
        "--from",
        "p3a",
        "--to",
        "p3b",
        "--live",
        "--wait",
        "--json",
        check=False,
    )
    assert result.returncode == 1
    record = json.loads(result.stdout)
    assert record["state"] == "failed"
    assert record["error"]["code"] == "INJECTED_FAULT" and record["error"]["message"]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--to", "p1b", "--dname", "renamed"], "DNAME_UNSUPPORTED"),
        (["--to", "nowhere"], "HOST_UNKNOWN"),
        (["--to", "p1a"], "SAME_HOST"),
        (["--to", "p1b", "--offline"], "INVALID_FLAGS"),
        (["--to", "p1b", "--postcopy"], "INVALID_FLAGS"),
        (["--to", "p1b", "--live", "--copy-storage-all"], "STORAGE_MIGRATION_UNSUPPORTED"),
        (["--to", "p1b", "--migrate-disks", "vda"], "INVALID_FLAGS"),
    ],
)
def test_refused_requests_exit_two_and_touch_no_host(fleet, args, code):
    vm = running_vm("p1a")
    before = vmigrate("domains", "p1b", "--json").stdout
    result = vmigrate("migrate", vm["name"], "--from", "p1a", *args, check=False)
    assert result.returncode == 2
    assert code in result.stderr and result.stdout == ""
    assert vmigrate("domains", "p1b", "--json").stdout == before
    mine = [
        d
        for d in json.loads(vmigrate("domains", "p1a", "--json").stdout)
        if d["name"] == vm["name"]
    ]
    assert mine[0]["state"] == "running"


def test_destination_xml_needs_v3_and_the_same_abi(fleet, tmp_path):
    vm = running_vm("pxa", memory_mib=256)
    current = vmigrate("dumpxml", "pxa", vm["name"]).stdout
    same_abi = tmp_path / "same.xml"
    same_abi.write_text(current.replace("<vcpu>", "<description>moved</description><vcpu>", 1))
    bigger = tmp_path / "bigger.xml"
    bigger.write_text(current.replace(">256<", ">512<").replace("262144", "524288"))

    refused = vmigrate(
        "migrate", vm["name"], "--from", "pxa", "--to", "p2a", "--xml", str(same_abi), check=False
    )
    assert refused.returncode == 2 and "DEST_XML_UNSUPPORTED" in refused.stderr

    result = vmigrate(
        "migrate",
        vm["name"],
        "--from",
        "pxa",
        "--to",
        "pxb",
        "--xml",
        str(bigger),
        "--wait",
        "--json",
        check=False,
    )
    record = json.loads(result.stdout)
    assert result.returncode == 1 and record["error"]["code"] == "DEST_XML_ABI_MISMATCH"
    assert record["vm_host"] == "pxa"

    vmigrate(
        "migrate", vm["name"], "--from", "pxa", "--to", "pxb", "--xml", str(same_abi), "--wait"
    )
    assert "<description>moved</description>" in vmigrate("dumpxml", "pxb", vm["name"]).stdout


def test_bad_xml_is_refused_with_a_clear_error(fleet, tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text("<domain type='qemu'><name>x</name>")
    result = vmigrate("define", "pxa", str(path), check=False)
    assert result.returncode == 2 and "not well-formed" in result.stderr


def test_celery_finds_the_app(fleet):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "broker",
            "inspect",
            "ping",
            "-d",
            "pxa@vmigrate",
            "--timeout",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "pong" in result.stdout


def test_scheduling_options_reach_the_record(fleet):
    vm = running_vm("pxa")
    later = "2099-01-01T00:00:00+00:00"
    record = json.loads(
        vmigrate(
            "migrate",
            vm["name"],
            "--from",
            "pxa",
            "--to",
            "pxb",
            "--window",
            "closed",
            "--not-before",
            later,
            "--priority",
            "7",
            "--json",
        ).stdout
    )
    assert record["state"] == "queued"
    assert (record["window"], record["not_before"], record["priority"]) == ("closed", later, 7)
    cancelled = vmigrate("cancel", record["id"], "--json")
    assert json.loads(cancelled.stdout)["state"] == "cancelled"


def test_a_duplicate_migration_id_is_refused(fleet):
    first, second = running_vm("pxa"), running_vm("pxa")
    chosen = unique("fixed-id")
    vmigrate("migrate", first["name"], "--from", "pxa", "--to", "pxb", "--id", chosen, "--wait")
    again = vmigrate(
        "migrate", second["name"], "--from", "pxa", "--to", "pxb", "--id", chosen, check=False
    )
    assert again.returncode == 2 and "DUPLICATE_ID" in again.stderr
    assert json.loads(vmigrate("show", chosen, "--json").stdout)["domain"] == first["name"]
    bad = vmigrate(
        "migrate", second["name"], "--from", "pxa", "--to", "pxb", "--id", "../x", check=False
    )
    assert bad.returncode == 2 and "INVALID_ID" in bad.stderr
