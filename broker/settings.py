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

from broker.callback_urls import BadURL, place_of


def env(default: Any, name: str, sep: str = ":") -> Any:
    """A setting's default, and the environment variable that overrides it (named beside it);
    ``sep`` separates a list's items in that variable."""
    return field(default=default, metadata={"env": name, "sep": sep})


@dataclass(frozen=True)
class Settings:
    #: Broker and state store. ``None`` means the embedded broker (see broker/embedded.py).
    broker_url: str | None = env(None, "VMIGRATE_BROKER_URL")
    #: Behind Sentinel (a ``sentinel://`` broker URL): the name of the master the sentinels watch,
    #: and the sentinels' own password, if they have one (``requirepass`` in sentinel.conf).
    sentinel_master: str = env("vmigrate", "VMIGRATE_SENTINEL_MASTER")
    sentinel_password: str = env("", "VMIGRATE_SENTINEL_PASSWORD")
    #: When the Redis master has replicas, a submission is acknowledged once one of them holds
    #: it, or after this many seconds (then with a warning): what a failover cannot lose.
    replica_ack_timeout: float = env(1.0, "VMIGRATE_REPLICA_ACK_TIMEOUT")
    #: Seconds between two host heartbeats.
    heartbeat_interval: float = env(2.0, "VMIGRATE_HEARTBEAT_INTERVAL")
    #: A host whose last heartbeat is older than this is shown as dead and gets no new work.
    host_ttl: float = env(10.0, "VMIGRATE_HOST_TTL")
    #: Seconds between two progress polls of a running Perform (short tasks, never one long one).
    poll_interval: float = env(0.2, "VMIGRATE_POLL_INTERVAL")
    #: kombu's Redis visibility timeout: an unacknowledged message is redelivered after this.
    #: Every vmigrate task is far shorter, so a redelivery only follows a crash.
    visibility_timeout: int = 300
    #: Threads per host worker and per dispatcher process.
    worker_concurrency: int = env(4, "VMIGRATE_WORKER_CONCURRENCY")
    #: TCP ports a destination allocates for incoming migration streams.
    migration_port_min: int = env(49152, "VMIGRATE_MIGRATION_PORT_MIN")
    migration_port_max: int = env(49215, "VMIGRATE_MIGRATION_PORT_MAX")
    #: Address a destination advertises in the URI it returns from Prepare.
    migration_address: str = env("127.0.0.1", "VMIGRATE_MIGRATION_ADDRESS")
    #: libvirt driver: the local libvirtd, as the host worker reaches it.
    libvirt_uri: str = env("qemu:///system", "VMIGRATE_LIBVIRT_URI")
    #: libvirt driver: how peer daemons reach this host's libvirtd (the destination URI of a
    #: peer-to-peer migration). Empty: ``libvirt_uri`` itself when it names a host or a socket,
    #: else ``qemu+tcp://<migration_address>/system``.
    libvirt_peer_uri: str = env("", "VMIGRATE_LIBVIRT_PEER_URI")
    #: Directories where this host's disk images, kernels, initrds, firmware and serial-console
    #: files may live (TOML list; the environment variable separates them with ``:``). A domain
    #: naming a host path outside them is refused at define, start and Prepare.
    storage_roots: tuple[str, ...] = env(("/var/lib/vmigrate/images",), "VMIGRATE_STORAGE_ROOTS")
    #: Largest domain XML or cookie accepted anywhere, in bytes.
    max_xml_bytes: int = 1_048_576
    #: How long ``vmigrate`` waits for a host to answer a control command (define, start...).
    command_timeout: float = 30.0
    #: How long finished migration records are kept, in seconds.
    record_ttl: int = 30 * 24 * 3600
    #: A phase message unanswered (or a phase unfinished) this long is sent again; the driver's
    #: phases are idempotent, and fencing makes a second copy harmless.
    phase_timeout: float = env(30.0, "VMIGRATE_PHASE_TIMEOUT")
    #: A Perform whose progress poll has not run for this long gets a new poll.
    poll_stale_after: float = env(10.0, "VMIGRATE_POLL_STALE_AFTER")
    #: A host without heartbeat this long is dead: its pending phases fail with HOST_DOWN and the
    #: migration rolls back (or, past the hand-over, forward).
    host_dead_after: float = env(60.0, "VMIGRATE_HOST_DEAD_AFTER")
    #: QEMU and libvirt drivers: a migration still running after this many seconds per GiB of
    #: guest RAM is aborted, or switched to post-copy when allowed (KubeVirt's default, 150).
    completion_timeout_per_gib: float = env(150.0, "VMIGRATE_COMPLETION_TIMEOUT_PER_GIB")
    #: How long a signed message stays valid, in seconds.
    message_ttl: float = 600.0
    #: Key files for signing messages: key id -> path. Empty: a generated single-machine key.
    signing_keys: dict[str, str] = field(default_factory=dict)
    #: Which key of ``signing_keys`` signs (all of them verify, so keys can be rotated).
    signing_key_id: str = ""
    #: Admission limits (TOML table ``[limits]``): migrations in flight out of / into one host,
    #: and in the whole fleet. A migration that does not fit waits; it never fails for a slot.
    outbound_per_host: int = 2
    inbound_per_host: int = 2
    fleet: int = 5
    #: Optional bandwidth budget per host in MiB/s shared by its migrations (0: none).
    bandwidth_per_host_mibps: int = 0
    #: A waiting migration gains one priority step per this many seconds (no starvation).
    ageing_seconds: float = 600.0
    #: Seconds between two scheduler ticks (release of queued migrations).
    scheduler_interval: float = env(1.0, "VMIGRATE_SCHEDULER_INTERVAL")
    #: How far into each queue line a tick looks: its cost is bounded by this, not by the queue.
    scheduler_scan: int = 500
    #: Named windows (``[windows.NAME]`` with ``timezone`` and ``ranges``).
    windows: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Host name -> window name, from ``[hosts.NAME] window`` and ``[groups.NAME] hosts, window``.
    host_windows: dict[str, str] = field(default_factory=dict)
    #: Bearer tokens the REST API accepts (``[api] tokens`` or ``VMIGRATE_API_TOKENS``).
    api_tokens: tuple[str, ...] = ()
    #: Webhooks (TOML table ``[webhooks]``, each key without the ``webhook_`` prefix). The URLs a
    #: migration may name as its callback: each entry is a scheme, host and port, and a path
    #: that the callback's path must equal or lie under. Empty: no callback is accepted.
    webhook_allow: tuple[str, ...] = env((), "VMIGRATE_WEBHOOK_ALLOW", sep=",")
    #: Standing subscriptions: URLs that receive every migration's state changes.
    webhook_subscribers: tuple[str, ...] = env((), "VMIGRATE_WEBHOOK_SUBSCRIBERS", sep=",")
    #: The HMAC-SHA256 key that signs every delivery (``X-Vmigrate-Signature``); required as soon
    #: as ``webhook_allow`` or ``webhook_subscribers`` is set. Give every dispatcher the same.
    webhook_secret: str = env("", "VMIGRATE_WEBHOOK_SECRET")
    #: Seconds a receiver has to answer one delivery.
    webhook_timeout: float = env(5.0, "VMIGRATE_WEBHOOK_TIMEOUT")
    #: A failed delivery is retried after 1, 2, 4... seconds, at most this many apart.
    webhook_retry_max_seconds: float = env(300.0, "VMIGRATE_WEBHOOK_RETRY_MAX_SECONDS")
    #: A delivery still undelivered this long after its state change is dropped (and logged).
    webhook_give_up_seconds: float = env(86400.0, "VMIGRATE_WEBHOOK_GIVE_UP_SECONDS")
    #: Extra raw Celery settings (advanced; applied last).
    celery: dict[str, Any] = field(default_factory=dict)


#: Environment variable -> setting, from the ``env(...)`` beside each setting above.
ENV_OVERRIDES: dict[str, str] = {
    f.metadata["env"]: f.name for f in fields(Settings) if "env" in f.metadata
}
#: Setting -> the separator of its items in its environment variable.
_SEPARATORS: dict[str, str] = {f.name: f.metadata["sep"] for f in fields(Settings) if f.metadata}


class ConfigError(ValueError):
    """The configuration file or an environment override is invalid."""


def _coerce(name: str, raw: Any, default: Any) -> Any:
    expected = type(default) if default is not None else str
    if expected is tuple:
        return _strings(name, raw, _SEPARATORS.get(name, ":"))
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


def _strings(name: str, raw: Any, sep: str) -> tuple[str, ...]:
    """A list of strings: a TOML list, or ``sep``-separated in the environment."""
    items = raw.split(sep) if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(p, str) for p in items):
        raise ConfigError(f"setting {name!r} must be a list of strings, got {raw!r}")
    return tuple(p.strip() for p in items if p.strip())


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the parsed TOML document at ``path``, with a clear error when it is unusable."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} (VMIGRATE_CONFIG) does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None


def _table(document: dict[str, Any], name: str) -> dict[str, Any]:
    table = document.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] must be a table")
    return table


def _fleet_tables(document: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    """The ``[limits]``, ``[windows.*]``, ``[hosts.*]``, ``[groups.*]`` and ``[api]`` tables."""
    values: dict[str, Any] = dict(_table(document, "limits"))
    values["windows"] = _table(document, "windows")
    host_windows: dict[str, str] = {}
    for group, spec in _table(document, "groups").items():
        if not isinstance(spec, dict) or not isinstance(spec.get("hosts", []), list):
            raise ConfigError(f"[groups.{group}] needs 'hosts', a list of host names")
        host_windows.update({h: spec["window"] for h in spec.get("hosts", []) if "window" in spec})
    for host, spec in _table(document, "hosts").items():
        if isinstance(spec, dict) and "window" in spec:
            host_windows[host] = spec["window"]
    for host, window in host_windows.items():
        if window not in values["windows"]:
            raise ConfigError(f"host {host!r} is assigned window {window!r}, which is not defined")
    values["host_windows"] = host_windows
    tokens = _table(document, "api").get("tokens", [])
    if environ.get("VMIGRATE_API_TOKENS"):
        tokens = [t.strip() for t in environ["VMIGRATE_API_TOKENS"].split(",") if t.strip()]
    if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
        raise ConfigError("[api] tokens must be a list of non-empty strings")
    values["api_tokens"] = tuple(tokens)
    values.update(_webhooks_table(document))
    return values


def _webhooks_table(document: dict[str, Any]) -> dict[str, Any]:
    """``[webhooks] allow, subscribers, secret...``: the ``webhook_*`` settings."""
    known = {f.name for f in fields(Settings)}
    values = {}
    for key, raw in _table(document, "webhooks").items():
        if f"webhook_{key}" not in known:
            raise ConfigError(f"[webhooks] has no setting {key!r}")
        values[f"webhook_{key}"] = raw
    return values


def settings_from(document: dict[str, Any], environ: dict[str, str]) -> Settings:
    """Build settings from a parsed TOML document and an environment mapping."""
    defaults = Settings()
    known = {f.name: getattr(defaults, f.name) for f in fields(Settings)}
    section = document.get("vmigrate", document)
    values: dict[str, Any] = {}
    for key, raw in {**section, **_fleet_tables(document, environ)}.items():
        if key in known and not isinstance(raw, dict | tuple):
            values[key] = _coerce(key, raw, known[key])
        elif key in known:
            values[key] = raw
    for env_name, key in ENV_OVERRIDES.items():
        if environ.get(env_name):
            values[key] = _coerce(key, environ[env_name], known[key])
    result = replace(defaults, **values)
    _check(result)
    return result


def _check(result: Settings) -> None:
    """Refuse settings that cannot work together."""
    if result.migration_port_min > result.migration_port_max:
        raise ConfigError("migration_port_min must not exceed migration_port_max")
    for name in ("outbound_per_host", "inbound_per_host", "fleet"):
        if getattr(result, name) < 1:
            raise ConfigError(f"limit {name} must be at least 1")
    relative = [p for p in result.storage_roots if not p.startswith("/")]
    if relative:
        raise ConfigError(f"storage_roots takes absolute directories, not {relative[0]!r}")
    for url in (*result.webhook_allow, *result.webhook_subscribers):
        try:
            place_of(url)
        except BadURL as exc:
            raise ConfigError(f"[webhooks]: {exc}") from None
    if (result.webhook_allow or result.webhook_subscribers) and not result.webhook_secret:
        raise ConfigError("webhooks need [webhooks] secret (VMIGRATE_WEBHOOK_SECRET) to sign with")
    if result.scheduler_scan < 1:
        raise ConfigError("scheduler_scan must be at least 1")


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Settings for this process: defaults, then ``VMIGRATE_CONFIG``, then the environment."""
    env = dict(os.environ if environ is None else environ)
    path = env.get("VMIGRATE_CONFIG")
    document = read_config_file(Path(path)) if path else {}
    return settings_from(document, env)
