"""Host control commands (define, start, dumpxml, faults): run on the host, answered through a
Redis list.

The caller is a command-line process or the API, never a task, so it may wait for the answer;
tasks themselves never wait on each other.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from broker import keys
from broker.queues import host_queue
from tasks.errors import VMigrateError
from tasks.hostside import current_host
from tasks.publish import CONTROL_TASK, send
from tasks.registry import get_host
from tasks.runtime import runtime
from workers.drivers.base import DriverError
from workers.safexml import XMLRejected

REPLY_TTL = 300
ACTIONS = ("define", "start", "dumpxml", "faults")


def run_control(request_id: str, action: str, args: dict[str, Any], queue: str = "") -> None:
    """On the host: do ``action`` and push the answer for whoever waits on ``request_id``."""
    ctx = current_host(queue)
    try:
        if action == "define":
            result: Any = ctx.driver.define(str(args["xml"])).as_dict()
        elif action == "start":
            result = ctx.driver.start(str(args["name"])).as_dict()
        elif action == "dumpxml":
            result = ctx.driver.domain_xml(str(args["name"]))
        elif action == "faults":
            result = ctx.driver.set_faults([str(p) for p in args["phases"]])
        else:
            raise DriverError(f"unknown host command {action!r}", "UNKNOWN_COMMAND")
        reply = {"ok": True, "result": result}
    except (DriverError, XMLRejected, ValueError, KeyError) as exc:
        code = getattr(exc, "code", "INVALID_INPUT")
        reply = {"ok": False, "error": {"code": code, "message": str(exc)}}
    ctx.publish_inventory(always=True)
    client = runtime().redis
    with client.pipeline() as pipe:
        pipe.rpush(keys.reply(request_id), json.dumps(reply))
        pipe.expire(keys.reply(request_id), REPLY_TTL)
        pipe.execute()


def call_host(host: str, action: str, args: dict[str, Any], timeout: float | None = None) -> Any:
    """From a client: ask ``host`` to run ``action`` and wait for its answer."""
    rt = runtime()
    info = get_host(rt.redis, host)
    if info is None:
        raise VMigrateError("HOST_UNKNOWN", f"host {host!r} is not registered")
    if not info.alive:
        raise VMigrateError("HOST_DOWN", f"host {host!r} is not alive (no recent heartbeat)")
    request_id = str(uuid.uuid4())
    send(CONTROL_TASK, [request_id, action, args], host_queue(host))
    wait = timeout if timeout is not None else rt.settings.command_timeout
    answer = rt.redis.blpop([keys.reply(request_id)], timeout=wait)
    if answer is None:
        raise VMigrateError("HOST_TIMEOUT", f"host {host!r} did not answer within {wait:.0f} s")
    reply = json.loads(answer[1])
    if not reply["ok"]:
        raise VMigrateError(reply["error"]["code"], reply["error"]["message"])
    return reply["result"]
