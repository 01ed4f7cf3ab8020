"""The main job on a fresh machine: ``vmigrate demo`` on the embedded broker, no service needed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(f"{proc.name}: {cmdline}")
    return found


def test_demo_runs_on_the_embedded_broker_and_stops_everything(tmp_path):
    env = {
        k: v for k, v in os.environ.items() if k not in ("VMIGRATE_BROKER_URL", "VMIGRATE_CONFIG")
    }
    env["VMIGRATE_HOME"] = str(tmp_path)
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "vmigrate.cli", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "embedded broker at redis+socket://" in out
    rows = {line.split("  ")[0]: line for line in out.splitlines()}
    assert (
        "completed" in rows["v3 between current hosts"]
        and " v3 " in rows["v3 between current hosts"]
    )
    assert " v2 " in rows["v2: the highest version shared with a v2-only host"]
    assert "DNAME_UNSUPPORTED" in rows["rename refused: a v1 host cannot carry --dname"]
    v1_row = rows["v1 to the legacy host"]
    assert " v1 " in v1_row and "completed" in v1_row
    assert "prepare@v1 perform@v1 finish@v1" in v1_row and v1_row.rstrip().endswith("legacy")
    assert "completed" in rows["stale registry: legacy claims v3, refuses it, fallback"]
    fault_row = rows["fault in Finish: v3 rolls back, source resumes"]
    assert (
        "failed" in fault_row
        and "confirm(c)@v3" in fault_row
        and fault_row.rstrip().endswith("alpha")
    )
    assert processes_mentioning(str(tmp_path)) == []


def _demo(tmp_path: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("VMIGRATE_BROKER_URL", "VMIGRATE_CONFIG")
    }
    env.update(VMIGRATE_HOME=str(tmp_path), TMPDIR=str(tmp_path))
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "vmigrate.cli", "demo", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_libvirt_demo_moves_a_virsh_defined_guest_and_back():
    from tests.integration.test_libvirt import require_libvirt

    require_libvirt()
    tmp_path = Path(tempfile.mkdtemp(prefix="vm-lvd-"))  # short: the broker's socket path
    result = _demo(tmp_path, "--driver", "libvirt")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if ": completed, protocol v3" in line]
    assert len(rows) == 2 and "alpha -> bravo" in rows[0] and "bravo -> alpha" in rows[1], rows
    consoles = [line for line in result.stdout.splitlines() if "console: last heartbeat" in line]
    for line in consoles:
        boots = set(re.findall(r"\('([0-9a-f-]+)', \d+\)", line))
        assert len(boots) == 1 and "None" not in line, line
    assert "demo-guest   running" in result.stdout.split("virsh list --all on alpha:")[1]
    assert processes_mentioning(str(tmp_path)) == []
    shutil.rmtree(tmp_path)


def test_the_libvirt_demo_says_what_to_install_where_libvirt_is_missing(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    (empty / "python3").symlink_to(sys.executable)
    result = _demo(tmp_path, "--driver", "libvirt", path=str(empty))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "is not installed" in result.stdout
    assert (
        "apt-get install libvirt-daemon" in result.stdout and "vmigrate[libvirt]" in result.stdout
    )
