"""Commands that steer a fleet: cancel, evacuate, drain, scheduler, api, events.

As in commands.py, each handler imports what it needs when it runs (no Celery for the others).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from vmigrate import output
from vmigrate.commands import attach, connect
from vmigrate.follow import wait_for
from vmigrate.options import add_service_options


def cancel(args: argparse.Namespace) -> int:
    from tasks.cancel import request_cancel  # noqa: PLC0415

    rt = connect()
    record = request_cancel(args.id)
    if record.terminal and not record.cancel_requested:
        print(f"migration {record.id} had already ended: {record.state}", file=sys.stderr)
    final = wait_for(rt, record.id, progress=not args.json)
    if args.json:
        output.print_json(final.public())
    else:
        print(f"migration {final.id}: {final.state} (VM on {final.vm_host})")
    already = not record.cancel_requested
    return 0 if final.state == "cancelled" or already else 1


def _wait_all(found: Any, items: list[dict[str, Any]]) -> None:
    for item in items:
        if item["id"]:
            record = wait_for(found, item["id"], progress=False)
            item["state"], item["error"] = record.state, record.error
        else:
            item["state"] = "refused"


def evacuate(args: argparse.Namespace, drain: bool = False) -> int:
    from tasks import evacuation  # noqa: PLC0415

    rt = connect()
    if drain:
        evacuation.set_drained(args.host, True)
    items = evacuation.evacuate(args.host, args.to or None, args.window)
    for item in items:
        item.setdefault("state", "submitted" if item["id"] else "refused")
    if args.wait:
        _wait_all(rt, items)
    output.emit(items, args.json, output.evacuation_table)
    ok = {"completed"} if args.wait else {"submitted"}
    return 0 if all(i["state"] in ok for i in items) else 1


def drain(args: argparse.Namespace) -> int:
    return evacuate(args, drain=True)


def undrain(args: argparse.Namespace) -> int:
    from tasks.evacuation import set_drained  # noqa: PLC0415

    connect()
    set_drained(args.host, False)
    print(f"host {args.host} accepts new migrations again")
    return 0


def scheduler(args: argparse.Namespace) -> int:
    from workers.dispatcher import run_scheduler  # noqa: PLC0415

    connect()
    run_scheduler()
    return 0


def api(args: argparse.Namespace) -> int:
    from vmigrate.api import serve  # noqa: PLC0415
    from workers.service import observability, warn_if_volatile  # noqa: PLC0415

    rt = connect()
    observability(args.loglevel, args.log_format, args.metrics_port)
    warn_if_volatile(rt.redis)
    serve(args.bind, args.port)
    return 0


def events(args: argparse.Namespace) -> int:
    from broker import keys  # noqa: PLC0415
    from tasks.store import check_stream_id  # noqa: PLC0415

    last = check_stream_id(args.since)
    client = attach().redis
    while True:
        block = 1000 if args.follow else None
        answer = client.xread({keys.events(): last}, count=1000, block=block)
        for _stream, entries in answer or []:
            for event_id, fields in entries:
                last = event_id
                output.print_event(event_id, fields, args.json)
        if not args.follow and not answer:
            return 0
        if not answer:
            time.sleep(0.01)


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("cancel", help="cancel a migration (queued: at once; running: rollback)")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    for name, helptext in (
        ("evacuate", "migrate every running VM off a host"),
        ("drain", "mark a host so nothing new goes there, and evacuate it"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("host")
        p.add_argument("--to", action="append", metavar="HOST", help="allowed destination (repeat)")
        p.add_argument("--window", help="run the migrations in this window")
        p.add_argument("--wait", action="store_true")
        p.add_argument("--json", action="store_true")
    p = sub.add_parser("undrain", help="let new migrations reach a drained host again")
    p.add_argument("host")
    sub.add_parser("scheduler", help="run a standalone scheduler (dispatchers also tick)")
    p = sub.add_parser("api", help="serve the REST API under /v1/ and the live view at /")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--bind", default="127.0.0.1")
    add_service_options(p)
    p = sub.add_parser("events", help="print migration state changes from the event stream")
    p.add_argument("--since", default="0", help="stream id to start after (default: the beginning)")
    p.add_argument("--follow", action="store_true")
    p.add_argument("--json", action="store_true")


HANDLERS = {
    "cancel": cancel,
    "evacuate": evacuate,
    "drain": drain,
    "undrain": undrain,
    "scheduler": scheduler,
    "api": api,
    "events": events,
}
