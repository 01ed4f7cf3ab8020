"""The previous release of vmigrate, built in a virtual environment of its own from the commit
docs/releases.md records for it (tags may not travel with a clone; the commit does)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.environment import missing_dependency

ROOT = Path(__file__).resolve().parents[1]
RELEASE = re.compile(r"^## (\d+\.\d+\.\d+) .*?Release commit: `([0-9a-f]{40})`", re.M | re.S)


@dataclass(frozen=True)
class Release:
    version: str
    commit: str
    python: Path  # its virtual environment's interpreter

    @property
    def cli(self) -> list[str]:
        """``vmigrate`` of that release (``-P``: never the checkout in the current directory)."""
        return [str(self.python), "-P", "-m", "vmigrate.cli"]


def releases() -> list[tuple[str, str]]:
    """(version, commit) of every release docs/releases.md names, newest first."""
    text = (ROOT / "docs" / "releases.md").read_text()
    sections = re.split(r"^(?=## )", text, flags=re.M)
    found = [RELEASE.match(section) for section in sections]
    return [(m.group(1), m.group(2)) for m in found if m]


def previous_release() -> tuple[str, str]:
    """The release to upgrade from: the newest, or ``VMIGRATE_UPGRADE_FROM=VERSION`` (any
    release docs/releases.md records, to try an older fleet's upgrade)."""
    known = releases()
    assert known, "docs/releases.md names no release with its commit"
    wanted = os.environ.get("VMIGRATE_UPGRADE_FROM")
    if not wanted:
        return known[0]
    chosen = [r for r in known if r[0] == wanted]
    assert chosen, (
        f"VMIGRATE_UPGRADE_FROM={wanted}: docs/releases.md records {[v for v, _ in known]}"
    )
    return chosen[0]


def build(version: str, commit: str) -> Release:
    """The release installed in ``$TMPDIR/vmigrate-release-COMMIT/venv`` (built once)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        missing_dependency("the upgrade test builds the previous release with git from a clone")
    where = Path(tempfile.gettempdir()) / f"vmigrate-release-{commit}"
    python = where / "venv" / "bin" / "python"
    if (where / "installed").exists():
        return Release(version, commit, python)
    shutil.rmtree(where, ignore_errors=True)
    (where / "src").mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=False
    )
    if archive.returncode != 0:
        missing_dependency(f"commit {commit} of release {version} is not in this clone")
    subprocess.run(["tar", "-x", "-C", str(where / "src")], input=archive.stdout, check=True)
    subprocess.run([sys.executable, "-m", "venv", str(where / "venv")], check=True)
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(where / "src")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    (where / "installed").write_text(version)
    return Release(version, commit, python)
