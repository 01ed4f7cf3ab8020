"""The per-host worker: drives the local hypervisor and consumes only its own host's queue.

It registers the host (name, protocols, driver, capacity, software version), keeps a heartbeat so
the registry shows it alive, publishes its domain inventory, and runs a Celery worker with a thread
pool (the driver's state lives in this process) on ``vmigrate.host.<name>``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from celery.signals import worker_ready

from broker.queues import check_host_name, host_queue
from broker.settings import Settings
from tasks.hostside import HostContext, bind_host, refresh_watched_inventories
from tasks.reconcile import reconcile
from tasks.registry import HostInfo, heartbeat, register, unregister_alive
from tasks.runtime import runtime
from workers.drivers.base import Driver, DriverError
from workers.drivers.registry import DriverSettings, UnknownDriver, load_driver
from workers.drivers.shared.config import HostConfig
from workers.service import observability, run_celery_worker, warn_if_volatile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostOptions:
    hosts: tuple[str, ...]  # usually one; a benchmark or test bed may serve many sim hosts
    driver: str = "sim"
    protocols: frozenset[int] = HostConfig.protocols
    state_dir: Path | None = None
    link_mibps: float | None = None  # sim only; None: the sim's own default
    time_scale: float | None = None  # sim only; None: the sim's own default
    fail_phases: tuple[str, ...] = ()  # sim only: phases the host fails (--fail-phase)
    libvirt_uri: str | None = None  # libvirt only; None: the libvirt_uri setting
    libvirt_peer_uri: str | None = None  # libvirt only; None: the libvirt_peer_uri setting
    memory_mib: int = HostConfig.memory_mib
    host_uuid: str | None = None
    loglevel: str = "WARNING"
    log_format: str = "text"
    metrics_port: int | None = None


def build_driver(options: HostOptions, host: str, state_dir: Path) -> Driver:
    """The driver ``--driver`` names, through the registry (workers/drivers/registry.py)."""
    settings = runtime().settings
    try:
        return load_driver(
            options.driver,
            DriverSettings(
                host=host,
                state_dir=state_dir,
                protocols=options.protocols,
                memory_mib=options.memory_mib,
                migration_address=settings.migration_address,
                ports=range(settings.migration_port_min, settings.migration_port_max + 1),
                host_uuid=options.host_uuid,
                storage_roots=settings.storage_roots,
                extra=_driver_extra(options, settings),
            ),
        )
    except (UnknownDriver, DriverError, RuntimeError) as exc:
        raise SystemExit(f"host {host}: {exc}") from None


def _driver_extra(options: HostOptions, settings: Settings) -> dict[str, float | str]:
    """The driver-specific values the worker was given (a driver keeps its defaults for others)."""
    extra: dict[str, float | str] = {
        "completion_timeout_per_gib": settings.completion_timeout_per_gib,
        "libvirt_uri": options.libvirt_uri or settings.libvirt_uri,
        "libvirt_peer_uri": options.libvirt_peer_uri or settings.libvirt_peer_uri,
    }
    if options.link_mibps is not None:
        extra["link_mibps"] = options.link_mibps
    if options.time_scale is not None:
        extra["time_scale"] = options.time_scale
    if options.fail_phases:
        extra["fail_phases"] = ",".join(options.fail_phases)
    return extra


def _heartbeat_loop(hosts: list[str], interval: float, ttl: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        try:
            heartbeat(runtime().redis, hosts, ttl)
            refresh_watched_inventories()
        except Exception:  # the broker or the hypervisor may blip; the next beat retries
            log.warning("heartbeat of %s failed", ", ".join(hosts[:3]), exc_info=True)


def _beat_once_consuming(
    hosts: list[str], interval: float, ttl: float, stop: threading.Event
) -> None:
    """The hosts show alive from the moment their queues are consumed (Celery's worker_ready),
    not before: a host the registry shows alive acts on what it is sent."""

    def consuming(**_: object) -> None:
        heartbeat(runtime().redis, hosts, ttl)
        beat = threading.Thread(target=_heartbeat_loop, args=(hosts, interval, ttl, stop))
        beat.daemon = True
        beat.start()

    worker_ready.connect(consuming, weak=False)


def check_options(options: HostOptions) -> None:
    if not options.hosts:
        raise SystemExit("name at least one host (--host)")
    for host in options.hosts:
        check_host_name(host)
    if len(set(options.hosts)) != len(options.hosts):
        raise SystemExit("a host is named twice in --host")
    if len(options.hosts) > 1 and (options.driver != "sim" or options.host_uuid):
        raise SystemExit(
            "one worker serves several hosts only with the sim driver and without --host-uuid"
        )


def state_dir_of(options: HostOptions, host: str, home: Path) -> Path:
    """``--state-dir`` is the host's directory; with several hosts, the parent of theirs."""
    if options.state_dir is None:
        return home / "hosts" / host
    return options.state_dir if len(options.hosts) == 1 else options.state_dir / host


def run_host_worker(options: HostOptions, home: Path) -> None:
    """Run until stopped (SIGTERM/SIGINT): the worker of one host (or of several sim hosts)."""
    check_options(options)
    observability(options.loglevel, options.log_format, options.metrics_port)
    rt = runtime()
    warn_if_volatile(rt.redis)
    for host in options.hosts:
        driver = build_driver(options, host, state_dir_of(options, host, home))
        caps = driver.capabilities()
        context = HostContext(host, driver, caps.protocols & options.protocols)
        bind_host(context)
        info = HostInfo(
            name=host,
            protocols=sorted(context.protocols),
            driver=caps.driver,
            memory_mib=caps.memory_mib,
            vcpus=caps.vcpus,
            host_uuid=driver.host_uuid,
            endpoint=driver.endpoint(),
            copy_storage=caps.copy_storage,
        )
        register(rt.redis, info, rt.settings.host_ttl, alive=False)
        reconcile(context)
    hosts = list(options.hosts)
    stop = threading.Event()
    _beat_once_consuming(hosts, rt.settings.heartbeat_interval, rt.settings.host_ttl, stop)
    node = hosts[0] if len(hosts) == 1 else f"{hosts[0]}-and-{len(hosts) - 1}-more"
    try:
        run_celery_worker(
            ",".join(host_queue(h) for h in hosts), f"{node}@vmigrate", options.loglevel
        )
    finally:
        stop.set()
        for host in hosts:
            unregister_alive(rt.redis, host)
