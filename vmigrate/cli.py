"""``vmigrate``: the command line. Every reporting command takes ``--json`` for other programs.

Exit codes: 0 success; 1 the migration ended but did not complete (``--wait``); 2 the request was
refused or invalid (nothing ran); 3 the broker or a host could not be reached.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from vmigrate import commands, fleet_commands
from vmigrate.options import add_service_options
from workers.drivers.flags import Flag
from workers.drivers.registry import DRIVERS
from workers.drivers.shared.config import HostConfig
from workers.drivers.sim.knobs import FAULT_PHASES

EXIT_REFUSED = 2
EXIT_UNREACHABLE = 3


def _protocols(text: str) -> frozenset[int]:
    try:
        versions = frozenset(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"protocols must be like 1,2,3, not {text!r}") from None
    if not versions or not versions <= {1, 2, 3}:
        raise argparse.ArgumentTypeError("protocol versions are 1, 2 and 3")
    return versions


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, not {value}")
    return value


def _disk_list(text: str) -> list[str]:
    """``--migrate-disks vda,vdb``: the targets, checked with the rest at submission."""
    return [t.strip() for t in text.split(",") if t.strip()]


def _fault_phase(text: str) -> str:
    if text not in FAULT_PHASES:
        raise argparse.ArgumentTypeError(f"a phase is one of {', '.join(FAULT_PHASES)}")
    return text


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, not {value}")
    return value


def _add_worker(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("worker", help="run the worker of one host")
    default = os.environ.get("VMIGRATE_HOST")
    p.add_argument(
        "--host",
        nargs="+",
        action="extend",
        default=None,
        required=not default,
        help="this host's name in the fleet (default: $VMIGRATE_HOST); sim only: several names "
        "(--host sim-{001..100} in bash) make one process serve them all, for benchmarks",
    )
    p.add_argument("--driver", default="sim", choices=sorted(DRIVERS), help="hypervisor driver")
    p.add_argument(
        "--protocols",
        type=_protocols,
        default=frozenset({1, 2, 3}),
        help="protocol versions to offer, e.g. 1 for a legacy host (default 1,2,3)",
    )
    p.add_argument("--state-dir", type=Path, help="where the host keeps its VMs")
    p.add_argument(
        "--link-mibps",
        type=_positive_float,
        help="sim: link bandwidth in MiB/s (default fast enough that nobody waits)",
    )
    p.add_argument(
        "--time-scale",
        type=_positive_float,
        help="sim: real seconds per simulated second (default 1)",
    )
    p.add_argument(
        "--memory-mib",
        type=_positive_int,
        default=HostConfig.memory_mib,
        help=f"host memory for guests (default {HostConfig.memory_mib})",
    )
    p.add_argument("--host-uuid", help="sim: host uuid (default: generated once, kept in state)")
    p.add_argument(
        "--fail-phase",
        action="append",
        choices=FAULT_PHASES,
        default=[],
        help="sim: fail this phase of every migration on this host (repeat; for fault tests; "
        "`vmigrate fault` changes it while the worker runs)",
    )
    p.add_argument(
        "--libvirt-uri",
        help="libvirt: the local libvirtd (default $VMIGRATE_LIBVIRT_URI or qemu:///system)",
    )
    p.add_argument(
        "--libvirt-peer-uri",
        help="libvirt: how peer daemons reach this libvirtd, e.g. qemu+tls://HOST/system "
        "(default: the libvirt URI when it names a host or socket, else qemu+tcp://ADDRESS/system)",
    )
    add_service_options(p)


def _add_migrate(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("migrate", help="migrate a domain between hosts")
    p.add_argument("domain")
    p.add_argument("--from", dest="source", required=True)
    p.add_argument("--to", dest="destination", required=True)
    p.add_argument("--dname", help="new name on the destination")
    p.add_argument("--xml", type=Path, help="destination XML (v3 only; must keep the guest ABI)")
    p.add_argument("--bandwidth", type=_positive_int, help="MiB/s")
    p.add_argument(
        "--migrate-disks",
        type=_disk_list,
        metavar="vda,vdb",
        help="with --copy-storage-*: copy only these disks (default: every writable disk)",
    )
    p.add_argument("--id", help="choose the migration id (default: a new uuid)")
    p.add_argument("--window", help="start only while this configured window is open")
    p.add_argument("--not-before", metavar="TIME", help="ISO 8601 with an offset")
    p.add_argument("--deadline", metavar="TIME", help="expire if it cannot start by then")
    p.add_argument("--priority", type=int, default=0, help="higher starts first (default 0)")
    p.add_argument(
        "--callback",
        metavar="URL",
        help="a webhook URL (under [webhooks] allow) that receives each state change",
    )
    for flag in Flag:
        p.add_argument(f"--{flag.option}", action="store_true", help=flag.meaning)
    p.add_argument("--wait", action="store_true", help="show progress and wait for the end")
    p.add_argument("--json", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vmigrate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_worker(sub)
    p = sub.add_parser("dispatcher", help="run a dispatcher process")
    add_service_options(p)
    p = sub.add_parser("hosts", help="list hosts")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("define", help="define a domain on a host")
    p.add_argument("host")
    p.add_argument("file", type=Path)
    p.add_argument("--start", action="store_true")
    p = sub.add_parser("start", help="start a defined domain")
    p.add_argument("host")
    p.add_argument("name")
    p = sub.add_parser("domains", help="list a host's domains")
    p.add_argument("host")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("fault", help="sim: make a host fail phases of every migration (tests)")
    p.add_argument("host")
    p.add_argument(
        "phases",
        nargs="*",
        type=_fault_phase,
        metavar="PHASE",
        help=f"one of {', '.join(FAULT_PHASES)}; none: fail nothing any more",
    )
    p = sub.add_parser("dumpxml", help="print a domain's XML")
    p.add_argument("host")
    p.add_argument("name")
    _add_migrate(sub)
    p = sub.add_parser("show", help="show one migration")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("list", help="list migrations, newest first")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=_positive_int, default=100)
    p = sub.add_parser("demo", help="run a small fleet on an embedded broker and migrate VMs")
    p.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--driver",
        choices=["sim", "qemu", "libvirt"],
        default="sim",
        help="qemu: real Linux guests (needs QEMU, a kernel and busybox); libvirt: the same "
        "guest on two libvirt daemons (needs root, libvirt and libvirt-python)",
    )
    sub.add_parser("embedded-stop", help="stop the embedded broker of VMIGRATE_HOME")
    fleet_commands.add_parsers(sub)
    return parser


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "worker": commands.worker,
    "dispatcher": commands.dispatcher,
    "hosts": commands.hosts,
    "define": commands.define,
    "start": commands.start,
    "domains": commands.domains,
    "dumpxml": commands.dumpxml,
    "fault": commands.fault,
    "migrate": commands.migrate,
    "show": commands.show,
    "list": commands.list_migrations,
    "demo": commands.demo,
    "embedded-stop": commands.embedded_stop,
    **fleet_commands.HANDLERS,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from broker.connection import lost_the_broker  # noqa: PLC0415 (after argument errors)
    from broker.settings import ConfigError  # noqa: PLC0415
    from tasks.errors import VMigrateError  # noqa: PLC0415

    try:
        return HANDLERS[args.command](args)
    except VMigrateError as exc:
        print(f"vmigrate: {exc.message} [{exc.code}]", file=sys.stderr)
        return EXIT_UNREACHABLE if exc.code in commands.UNREACHABLE else EXIT_REFUSED
    except ConfigError as exc:
        print(f"vmigrate: configuration: {exc} [CONFIG_INVALID]", file=sys.stderr)
        return EXIT_REFUSED
    except Exception as exc:
        if not lost_the_broker(exc):
            raise
        if os.environ.get("VMIGRATE_DEBUG"):  # where it was lost, for a bug report
            traceback.print_exc()
        print(f"vmigrate: lost the broker: {exc} [BROKER_UNREACHABLE]", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
