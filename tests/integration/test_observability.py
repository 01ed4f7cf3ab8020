"""Metrics, JSON logs and the live view, as an operator would look at them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

from tasks.runtime import runtime
from tasks.submission import MigrationRequest, submit
from tests.conftest import FAST_RECOVERY, HOME, REDIS_URL
from tests.environment import missing_dependency
from tests.helpers import running_vm, start_with_metrics, wait_terminal, wait_until
from vmigrate.fleet import LocalFleet


@pytest.fixture(scope="module")
def observed_host(fleet):
    local = LocalFleet({"VMIGRATE_BROKER_URL": REDIS_URL, **FAST_RECOVERY}, HOME)
    try:
        port = start_with_metrics(
            local,
            "obs",
            lambda p: local.start_host(
                "obs", "--metrics-port", str(p), "--log-format", "json", "--loglevel", "INFO"
            ),
        )
        local.wait_ready(runtime().redis, ["obs"])
        yield port, HOME / "logs" / "obs.log"
    finally:
        local.stop_all()


def test_metrics_are_served_and_all_named_vmigrate(observed_host):
    port, _ = observed_host
    vm = running_vm("obs")
    wait_terminal(submit(MigrationRequest(vm["name"], "obs", "pxb", flags=["live"])).id)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    names = {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert names and all(n.startswith("vmigrate_") for n in names), sorted(names)
    assert 'vmigrate_phase_duration_seconds_count{outcome="ok",phase="begin",protocol="3"}' in text
    assert "vmigrate_hosts_alive" in text and "vmigrate_queue_depth" in text
    assert re.search(r"^vmigrate_bytes_transferred_total [1-9]", text, re.M)


def test_json_logs_carry_the_migration_id(observed_host):
    _, log_path = observed_host
    vm = running_vm("obs")
    record = wait_terminal(submit(MigrationRequest(vm["name"], "obs", "pxb", flags=["live"])).id)

    def phases_logged():
        text = log_path.read_text()
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        about = [line for line in lines if line.get("migration_id") == record.id]
        logged = {line["message"].split(" ")[0] for line in about}
        return lines if {"begin", "perform", "confirm"} <= logged else None

    lines = wait_until(phases_logged, "Begin, Perform and Confirm logged with the migration id")
    assert all(line["migration_id"] == record.id for line in lines if record.id in line["message"])


def chromium(url: str, *extra: str) -> str:
    binary = shutil.which("chromium")
    if binary is None:
        missing_dependency("chromium is not installed (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="chromium-")
    result = subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            "--virtual-time-budget=3000",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    shutil.rmtree(profile, ignore_errors=True)
    return result.stdout


def test_live_view_shows_progress_moving_in_a_real_browser(api, tmp_path):
    vm = running_vm("slow", memory_mib=3072)  # twelve seconds on slow's link
    record = submit(MigrationRequest(vm["name"], "slow", "pxa", flags=["live"]))
    url = f"{api}/#token=test-token-1"
    wait_until(lambda: runtime().store.get(record.id).state == "perform", "Perform running")

    def percent_shown() -> float:
        dom = chromium(url, "--dump-dom")
        assert "Hosts" in dom and ">slow<" in dom
        found = re.search(rf'data-migration="{record.id}" data-percent="([0-9.]+)"', dom)
        assert found, "the running migration is not on the page"
        assert f'class="fill" style="width:{found.group(1)}%"' in dom  # the bar shows it too
        return float(found.group(1))

    first = percent_shown()
    second = wait_until(lambda: (shown := percent_shown()) > first and shown, "the bar moving", 30)
    shot = tmp_path / "live-view.png"
    chromium(url, f"--screenshot={shot}")
    assert second > first
    assert shot.exists() and shot.stat().st_size > 10_000
    Path(HOME / "live-view.png").write_bytes(shot.read_bytes())  # kept for a person to look at
    assert wait_terminal(record.id, timeout=60).state == "completed"
