"""The previous release of vmigrate, built in a virtual environment of its own from the commit
docs/releases.md records for it (tags may not travel with a clone; the commit does)."""

from __future__ import annotations

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


def latest_release() -> tuple[str, str]:
    """(version, commit) of the newest release docs/releases.md names."""
    found = RELEASE.search((ROOT / "docs" / "releases.md").read_text())
    assert found, "docs/releases.md names no release with its commit"
    return found.group(1), found.group(2)


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
