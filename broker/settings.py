"""Every vmigrate setting, declared once, typed and documented.

Values come from, in rising order of precedence: the defaults below, the TOML file named by
``VMIGRATE_CONFIG`` (section ``[vmigrate]`` or top level, see docs/configuration.md), and the
environment variables listed in ``ENV_OVERRIDES``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Settings:
    #: Broker and state store. ``None`` means the embedded broker (see broker/embedded.py).
    broker_url: str | None = None
    #: Seconds between two host heartbeats.
    heartbeat_interval: float = 2.0
    #: A host whose last heartbeat is older than this is shown as dead and gets no new work.
    host_ttl: float = 10.0
    #: Seconds between two progress polls of a running Perform (short tasks, never one long one).
    poll_interval: float = 0.2
    #: kombu's Redis visibility timeout: an unacknowledged message is redelivered after this.
    #: Every vmigrate task is far shorter, so a redelivery only follows a crash.
    visibility_timeout: int = 300
    #: Threads per host worker and per dispatcher process.
    worker_concurrency: int = 4
    #: TCP ports a destination allocates for incoming migration streams.
    migration_port_min: int = 49152
    migration_port_max: int = 49215
    #: Address a destination advertises in the URI it returns from Prepare.
    migration_address: str = "127.0.0.1"
    #: Largest domain XML or cookie accepted anywhere, in bytes.
    max_xml_bytes: int = 1_048_576
    #: How long ``vmigrate`` waits for a host to answer a control command (define, start...).
    command_timeout: float = 30.0
    #: How long finished migration records are kept, in seconds.
    record_ttl: int = 30 * 24 * 3600
    #: Attempts at a phase whose host reported a transient failure before rolling back.
    phase_retries: int = 0
    #: Extra raw Celery settings (advanced; applied last).
    celery: dict[str, Any] = field(default_factory=dict)


ENV_OVERRIDES: dict[str, str] = {
    "VMIGRATE_BROKER_URL": "broker_url",
    "VMIGRATE_HEARTBEAT_INTERVAL": "heartbeat_interval",
    "VMIGRATE_HOST_TTL": "host_ttl",
    "VMIGRATE_POLL_INTERVAL": "poll_interval",
}


class ConfigError(ValueError):
    """The configuration file or an environment override is invalid."""


def _coerce(name: str, raw: Any, default: Any) -> Any:
    expected = type(default) if default is not None else str
    if expected is float and isinstance(raw, int | str):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"setting {name!r} must be a number, got {raw!r}") from None
    if expected is int and isinstance(raw, str):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"setting {name!r} must be an integer, got {raw!r}") from None
    if not isinstance(raw, expected) or (expected is int and isinstance(raw, bool)):
        raise ConfigError(f"setting {name!r} must be {expected.__name__}, got {raw!r}")
    return raw


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the parsed TOML document at ``path``, with a clear error when it is unusable."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} (VMIGRATE_CONFIG) does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None


def settings_from(document: dict[str, Any], environ: dict[str, str]) -> Settings:
    """Build settings from a parsed TOML document and an environment mapping."""
    defaults = Settings()
    known = {f.name: getattr(defaults, f.name) for f in fields(Settings)}
    section = document.get("vmigrate", document)
    values: dict[str, Any] = {}
    for key, raw in section.items():
        if key in known:
            values[key] = _coerce(key, raw, known[key])
    for env_name, key in ENV_OVERRIDES.items():
        if environ.get(env_name):
            values[key] = _coerce(key, environ[env_name], known[key])
    result = replace(defaults, **values)
    if result.migration_port_min > result.migration_port_max:
        raise ConfigError("migration_port_min must not exceed migration_port_max")
    return result


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Settings for this process: defaults, then ``VMIGRATE_CONFIG``, then the environment."""
    env = dict(os.environ if environ is None else environ)
    path = env.get("VMIGRATE_CONFIG")
    document = read_config_file(Path(path)) if path else {}
    return settings_from(document, env)
