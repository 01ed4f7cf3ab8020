"""Settings load as documented, and the folders keep their dependencies pointing one way."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from broker.settings import ConfigError, settings_from

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_then_file_then_environment():
    doc = {
        "vmigrate": {
            "broker_url": "redis://file:6379/0",
            "poll_interval": 1,
            "worker_concurrency": 8,
        }
    }
    settings = settings_from(doc, {"VMIGRATE_BROKER_URL": "redis://env:6379/1"})
    assert settings.broker_url == "redis://env:6379/1"
    assert settings.poll_interval == 1.0 and settings.worker_concurrency == 8
    assert settings.visibility_timeout == 300


@pytest.mark.parametrize(
    "doc",
    [
        {"poll_interval": "soon"},
        {"worker_concurrency": True},
        {"migration_port_min": 2, "migration_port_max": 1},
    ],
)
def test_bad_settings_are_refused_clearly(doc):
    with pytest.raises(ConfigError):
        settings_from(doc, {})


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def modules(*patterns: str) -> list[Path]:
    return [p for pattern in patterns for p in ROOT.glob(pattern)]


@pytest.mark.parametrize(
    ("files", "forbidden"),
    [
        (
            (
                "workers/drivers/**/*.py",
                "workers/domxml.py",
                "workers/cookie.py",
                "workers/safexml.py",
            ),
            (
                "tasks",
                "broker",
                "vmigrate",
                "workers.host",
                "workers.dispatcher",
                "workers.service",
            ),
        ),
        (("broker/*.py",), ("tasks", "workers", "vmigrate")),
        (("tasks/*.py",), ("vmigrate", "workers.host", "workers.dispatcher", "workers.service")),
    ],
)
def test_dependencies_point_one_way(files, forbidden):
    for path in modules(*files):
        bad = {
            m for m in imports_of(path) if any(m == f or m.startswith(f + ".") for f in forbidden)
        }
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


DRIVER_PACKAGES = sorted(
    p.name for p in (ROOT / "workers" / "drivers").iterdir() if (p / "__init__.py").exists()
)


@pytest.mark.parametrize("package", DRIVER_PACKAGES)
def test_no_driver_imports_another_driver(package):
    """Drivers are peers over workers/drivers/shared and base: none builds on another."""
    others = {f"workers.drivers.{p}" for p in DRIVER_PACKAGES if p not in (package, "shared")}
    for path in (ROOT / "workers" / "drivers" / package).rglob("*.py"):
        bad = {m for m in imports_of(path) if any(m == o or m.startswith(o + ".") for o in others)}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_every_registered_driver_is_a_package_with_a_builder():
    from workers.drivers.registry import DRIVERS

    assert set(DRIVERS) == set(DRIVER_PACKAGES) - {"shared"}
    for name, module in DRIVERS.items():
        assert (ROOT / Path(*module.split("."))).is_dir(), name


def test_an_unknown_driver_is_refused_by_name(tmp_path):
    from workers.drivers.registry import DriverSettings, UnknownDriver, load_driver

    settings = DriverSettings("h", tmp_path, frozenset({3}), 1024, "127.0.0.1", range(1, 2))
    with pytest.raises(
        UnknownDriver, match="unknown driver 'xen': choose one of libvirt, qemu, sim"
    ):
        load_driver("xen", settings)
    sim = load_driver("sim", settings)
    assert sim.capabilities().driver == "sim" and sim.capabilities().protocols == frozenset({3})


def test_the_cli_the_api_and_the_checks_take_their_flags_from_one_declaration():
    from tasks.flags import validate_flags
    from vmigrate.cli import build_parser
    from vmigrate.schemas import MigrationIn
    from workers.drivers.flags import KNOWN, Flag

    migrate = build_parser()._subparsers._group_actions[0].choices["migrate"]
    cli_flags = {
        a.option_strings[0][2:]
        for a in migrate._actions
        if a.option_strings and isinstance(a, type(migrate._option_string_actions["--live"]))
    }
    assert cli_flags - {"wait", "json"} == {f.option for f in Flag}  # every other switch a flag
    fields = MigrationIn.model_json_schema()["properties"]
    assert {f.option for f in Flag} <= set(fields)
    assert all(fields[f.option]["description"] == f.meaning for f in Flag)
    assert set(Flag) == KNOWN and validate_flags(frozenset({"live", "postcopy"}))


def test_every_environment_override_is_documented_beside_its_setting():
    from broker.settings import ENV_OVERRIDES

    rows = (ROOT / "docs" / "configuration.md").read_text().splitlines()
    for env_name, setting in ENV_OVERRIDES.items():
        row = next((r for r in rows if f"`{env_name}`" in r), None)
        assert row is not None and f"`{setting}`" in row, (env_name, setting)


def test_lua_lives_in_lua_files():
    inline = [
        p.relative_to(ROOT)
        for p in modules("broker/**/*.py", "tasks/**/*.py", "workers/**/*.py", "vmigrate/**/*.py")
        if "redis.call(" in p.read_text()
    ]
    assert not inline
    loaded = {
        name
        for p in modules("tasks/**/*.py")
        for name in re.findall(r'lua_script\("(\w+)"\)', p.read_text())
    }
    assert {p.stem for p in (ROOT / "tasks").glob("*.lua")} == loaded  # each file, and in use
    assert {"admit", "swap_record", "webhook_fanout"} <= loaded
