"""The libvirt driver's decisions, without libvirt: flags, parameters, states, progress, limits."""

from __future__ import annotations

import json

from tasks.placement import Target, drivers_compatible, place
from tasks.registry import HostInfo
from workers.cookie import Cookie, parse_cookie
from workers.drivers.base import MigrationJob
from workers.drivers.libvirt import mapping
from workers.drivers.libvirt.base import peer_uri_of


def job(**changes: object) -> MigrationJob:
    fields: dict[str, object] = {
        "migration_id": "m",
        "version": 3,
        "domain": "web",
        "source": "a",
        "destination": "b",
    }
    return MigrationJob(**{**fields, **changes})  # type: ignore[arg-type]


def test_every_migration_is_peer_to_peer_and_each_flag_maps_to_libvirts():
    assert mapping.flag_names(frozenset()) == ["VIR_MIGRATE_PEER2PEER"]
    assert mapping.flag_names(frozenset({"live", "persist", "undefine_source"})) == [
        "VIR_MIGRATE_LIVE",
        "VIR_MIGRATE_PEER2PEER",
        "VIR_MIGRATE_PERSIST_DEST",
        "VIR_MIGRATE_UNDEFINE_SOURCE",
    ]
    assert "VIR_MIGRATE_POSTCOPY" in mapping.flag_names(frozenset({"live", "postcopy"}))
    assert "VIR_MIGRATE_OFFLINE" in mapping.flag_names(frozenset({"offline", "persist"}))
    assert set(mapping.FLAG_NAMES) == set(mapping.Flag), "every vmigrate flag has libvirt's"


def test_parameters_carry_the_uri_name_xml_and_bandwidth_only_when_asked():
    assert mapping.migration_params(job(), "tcp://10.0.0.2:49152", None) == {
        "migrate_uri": "tcp://10.0.0.2:49152"
    }
    full = mapping.migration_params(
        job(dname="web2", flags=frozenset({"persist"}), bandwidth_mibps=32), "tcp://h:1", "<x/>"
    )
    assert full == {
        "migrate_uri": "tcp://h:1",
        "destination_name": "web2",
        "destination_xml": "<x/>",
        "persistent_xml": "<x/>",
        "bandwidth": 32,
    }
    assert "persistent_xml" not in mapping.migration_params(job(), "tcp://h:1", "<x/>")


def test_libvirt_states_fold_into_running_paused_and_shutoff():
    assert [mapping.state_of(code) for code in range(8)] == [
        "shutoff",
        "running",
        "running",
        "paused",
        "running",
        "shutoff",
        "shutoff",
        "paused",
    ]
    assert mapping.state_of(99) == "shutoff"


def test_progress_reads_job_stats_with_the_dirty_rate_in_bytes():
    stats = {
        "type": 2,
        "memory_total": 1000,
        "memory_processed": 700,
        "memory_remaining": 250,
        "memory_iteration": 3,
        "memory_dirty_rate": 10,
        "memory_page_size": 4096,
        "data_total": 1000,
        "data_processed": 700,
        "data_remaining": 250,
        "downtime": 30,
    }
    seen = mapping.progress(stats)
    assert seen["percent"] == 75.0 and seen["memory_dirty_rate"] == 40960.0
    assert seen["memory_processed"] == 700 and seen["expected_downtime_ms"] == 30
    assert mapping.progress({})["percent"] == 0.0, "no statistics yet: nothing sent"
    assert mapping.progress({"memory_total": 10, "memory_remaining": 10})["percent"] == 0.0


def test_a_completed_job_reports_downtime_bytes_and_iterations():
    assert mapping.completed_stats(
        {"downtime": 12, "data_processed": 5000, "memory_processed": 4000, "memory_iteration": 4}
    ) == {"downtime_ms": 12, "transferred": 5000, "iterations": 4}
    assert mapping.completed_stats({"memory_processed": 4000}) == {
        "downtime_ms": 0,
        "transferred": 4000,
        "iterations": 0,
    }


def test_the_completion_timeout_counts_at_least_one_gib():
    quarter_gib = 256 * 1024
    assert not mapping.timed_out(0, 149.9, quarter_gib, 150)
    assert mapping.timed_out(0, 150, quarter_gib, 150)
    assert not mapping.timed_out(0, 299, 2 * 1024**2, 150)
    assert mapping.timed_out(0, 300, 2 * 1024**2, 150)


def test_memory_promised_to_prepared_migrations_is_not_free():
    assert mapping.memory_shortfall(1024, 4096, 0) == 0
    assert mapping.memory_shortfall(1024, 4096, 3072) == 0
    assert mapping.memory_shortfall(1024, 4096, 3073) == 1
    assert mapping.memory_shortfall(8192, 4096, 0) == 4096


def test_the_peer_uri_defaults_to_one_peers_can_reach():
    assert peer_uri_of("qemu:///system", "10.0.0.5") == "qemu+tcp://10.0.0.5/system"
    assert peer_uri_of("qemu:///system", "fd00::5") == "qemu+tcp://[fd00::5]/system"
    assert peer_uri_of("qemu+tls://h1.example/system", "10.0.0.5") == "qemu+tls://h1.example/system"
    sock = "qemu+unix:///system?socket=/srv/a/libvirt-sock"
    assert peer_uri_of(sock, "127.0.0.2") == sock


def test_the_cookie_carries_the_daemon_uri_and_an_older_cookie_reads_without_one():
    cookie = Cookie("web", None, "a", "hu", daemon_uri="qemu+tls://a/system")
    assert parse_cookie(cookie.to_xml()).daemon_uri == "qemu+tls://a/system"
    assert parse_cookie(Cookie("web", None, "a", "hu").to_xml()).daemon_uri is None


def test_a_registration_with_fields_of_a_newer_release_still_reads():
    stored = json.dumps(
        {
            "name": "h",
            "protocols": [3],
            "driver": "libvirt",
            "memory_mib": 1,
            "vcpus": 1,
            "host_uuid": "u",
            "added_in_a_later_release": True,
        }
    )
    info = HostInfo.from_json(stored, alive=True)
    assert info.driver == "libvirt" and info.alive and info.endpoint == {}


def test_evacuation_places_vms_only_on_hosts_of_the_same_driver():
    targets = [
        Target("q", 10**9, frozenset({3}), driver="qemu"),
        Target("l", 10, frozenset({3}), driver="libvirt"),
    ]
    assert place([("vm", 5)], targets, frozenset({3}), "libvirt") == {"vm": "l"}
    assert place([("big", 50)], targets, frozenset({3}), "libvirt") == {"big": None}
    assert drivers_compatible("sim", "sim") and not drivers_compatible("libvirt", "qemu")
