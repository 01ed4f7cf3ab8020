"""What each ``vmigrate`` command does: plain functions over the library (printing: output.py).

Each handler imports what it needs when it runs: a read-only command (``hosts``, ``show``, ...)
never loads Celery or the worker's modules, which would double its start-up time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from vmigrate import output
from vmigrate.follow import wait_for
from workers.drivers.flags import Flag

UNREACHABLE = frozenset({"BROKER_UNREACHABLE", "HOST_TIMEOUT"})


def attach() -> Any:
    """Attach to the broker (starting the embedded one if none is configured) without loading
    Celery: settings, Redis and the record store, for commands that only read or follow."""
    import redis  # noqa: PLC0415

    from broker.embedded import ensure_embedded, home_directory  # noqa: PLC0415
    from tasks.errors import VMigrateError  # noqa: PLC0415
    from tasks.runtime import records  # noqa: PLC0415

    found = records()
    if not found.settings.broker_url:
        ensure_embedded(home_directory() / "embedded")
    try:
        found.redis.ping()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise VMigrateError("BROKER_UNREACHABLE", f"cannot reach the broker: {exc}") from None
    return found


def connect() -> Any:
    """Attach to the broker, with Celery: for commands that publish to hosts or run a service."""
    from tasks.runtime import runtime  # noqa: PLC0415

    attach()
    return runtime()


def worker(args: argparse.Namespace) -> int:
    from broker.embedded import home_directory  # noqa: PLC0415
    from workers.host import HostOptions, run_host_worker  # noqa: PLC0415

    if args.fail_phase and args.driver != "sim":
        from tasks.errors import Refused  # noqa: PLC0415

        raise Refused("INVALID_OPTION", "--fail-phase is for the sim driver (fault tests) only")
    connect()
    options = HostOptions(
        hosts=tuple(args.host or [os.environ.get("VMIGRATE_HOST", "")]),
        driver=args.driver,
        protocols=args.protocols,
        state_dir=args.state_dir,
        link_mibps=args.link_mibps,
        time_scale=args.time_scale,
        libvirt_uri=args.libvirt_uri,
        libvirt_peer_uri=args.libvirt_peer_uri,
        memory_mib=args.memory_mib,
        host_uuid=args.host_uuid,
        fail_phases=tuple(args.fail_phase),
        loglevel=args.loglevel,
        log_format=args.log_format,
        metrics_port=args.metrics_port,
    )
    run_host_worker(options, home_directory())
    return 0


def dispatcher(args: argparse.Namespace) -> int:
    from workers.dispatcher import run_dispatcher  # noqa: PLC0415

    connect()
    run_dispatcher(args.loglevel, log_format=args.log_format, metrics_port=args.metrics_port)
    return 0


def hosts(args: argparse.Namespace) -> int:
    from tasks.registry import list_hosts  # noqa: PLC0415

    found = [h.as_dict() for h in list_hosts(attach().redis)]
    output.emit(found, args.json, output.hosts_table)
    return 0


def define(args: argparse.Namespace) -> int:
    from tasks.errors import VMigrateError  # noqa: PLC0415
    from tasks.host_commands import call_host  # noqa: PLC0415

    connect()
    try:
        xml = args.file.read_text()
    except OSError as exc:
        raise VMigrateError("FILE_UNREADABLE", f"cannot read {args.file}: {exc}") from None
    info = call_host(args.host, "define", {"xml": xml})
    print(f"Domain '{info['name']}' defined on {args.host} (uuid {info['uuid']})")
    if args.start:
        info = call_host(args.host, "start", {"name": info["name"]})
        print(f"Domain '{info['name']}' started on {args.host}")
    return 0


def start(args: argparse.Namespace) -> int:
    from tasks.host_commands import call_host  # noqa: PLC0415

    connect()
    info = call_host(args.host, "start", {"name": args.name})
    print(f"Domain '{info['name']}' started on {args.host}")
    return 0


def domains(args: argparse.Namespace) -> int:
    from tasks.errors import VMigrateError  # noqa: PLC0415
    from tasks.registry import get_host, read_inventory  # noqa: PLC0415

    client = attach().redis
    info = get_host(client, args.host)
    if info is None:
        raise VMigrateError("HOST_UNKNOWN", f"host {args.host!r} is not registered")
    if not info.alive:
        print(
            f"vmigrate: warning: host {args.host!r} is not alive; this is its last known inventory",
            file=sys.stderr,
        )
    output.emit(read_inventory(client, args.host) or [], args.json, output.domains_table)
    return 0


def fault(args: argparse.Namespace) -> int:
    from tasks.host_commands import call_host  # noqa: PLC0415

    connect()
    failing = call_host(args.host, "faults", {"phases": args.phases})
    print(f"host {args.host} fails: {', '.join(failing) or 'nothing'}")
    return 0


def dumpxml(args: argparse.Namespace) -> int:
    from tasks.host_commands import call_host  # noqa: PLC0415

    connect()
    print(call_host(args.host, "dumpxml", {"name": args.name}))
    return 0


def _request(args: argparse.Namespace) -> Any:
    from tasks.errors import Refused  # noqa: PLC0415
    from tasks.submission import MigrationRequest  # noqa: PLC0415

    xml = None
    if args.xml is not None:
        try:
            xml = args.xml.read_text()
        except OSError as exc:
            raise Refused("FILE_UNREADABLE", f"cannot read {args.xml}: {exc}") from None
    flags = sorted(flag.value for flag in Flag if getattr(args, flag.value))  # argparse's dest
    return MigrationRequest(
        domain=args.domain,
        source=args.source,
        destination=args.destination,
        dname=args.dname,
        xml=xml,
        flags=flags,
        bandwidth=args.bandwidth,
        migrate_disks=args.migrate_disks,
        id=args.id,
        priority=args.priority,
        window=args.window,
        not_before=args.not_before,
        deadline=args.deadline,
        callback=args.callback,
    )


def migrate(args: argparse.Namespace) -> int:
    from tasks.submission import submit  # noqa: PLC0415

    rt = connect()
    record = submit(_request(args))
    if not args.wait:
        if args.json:
            output.print_json(record.public())
        else:
            print(record.id)
        return 0
    if not args.json:
        print(record.id)
    final = wait_for(rt, record.id, progress=not args.json)
    if args.json:
        output.print_json(final.public())
    else:
        print(output.record_text(final))
    return 0 if final.state == "completed" else 1


def show(args: argparse.Namespace) -> int:
    from tasks.errors import VMigrateError  # noqa: PLC0415

    record = attach().store.get(args.id)
    if record is None:
        raise VMigrateError("MIGRATION_UNKNOWN", f"no migration with id {args.id!r}")
    if args.json:
        output.print_json(record.public())
    else:
        print(output.record_text(record))
    return 0


def list_migrations(args: argparse.Namespace) -> int:
    records = [r.public() for r in attach().store.list(args.limit)]
    output.emit(records, args.json, output.migrations_table)
    return 0


def demo(args: argparse.Namespace) -> int:
    if args.driver == "qemu":
        from vmigrate.demo_qemu import run_qemu_demo  # noqa: PLC0415

        return run_qemu_demo()
    if args.driver == "libvirt":
        from vmigrate.demo_libvirt import run_libvirt_demo  # noqa: PLC0415

        return run_libvirt_demo()
    from vmigrate.demo import run_demo  # noqa: PLC0415

    return run_demo(keep=args.keep)


def embedded_stop(args: argparse.Namespace) -> int:
    from broker.embedded import home_directory, stop_embedded  # noqa: PLC0415

    stop_embedded(home_directory() / "embedded")
    print(json.dumps({"stopped": str(home_directory() / "embedded")}))
    return 0
