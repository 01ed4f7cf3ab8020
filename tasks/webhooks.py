"""Webhooks: each state change, as JSON, POSTed to the URLs that asked for it, in order.

Two steps, both run by every dispatcher (``workers/webhooks.py``), never by a migration's tasks:

- **Fan-out.** Events after the shared cursor are read from the events stream; each goes to the
  standing subscribers and to the migration's own callback, appended to one outbox per receiver.
  A script moves the cursor only if no other dispatcher moved it first, so each event reaches
  each outbox once, in stream order.
- **Delivery.** For each receiver, the dispatcher holding its lease POSTs the oldest delivery;
  on a 2xx it is removed and the next one sent, otherwise it stays first and is tried again after
  1, 2, 4... seconds (``webhook_retry_max_seconds`` at most). A delivery older than
  ``webhook_give_up_seconds`` is dropped with a warning. A receiver that answered but whose 2xx
  was lost gets the delivery again: the event id tells it so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from broker import keys
from broker.connection import Client
from broker.settings import Settings
from tasks.events import as_event, latest_event_id, order
from tasks.lua import lua_script
from tasks.store import RecordStore
from tasks.webhook_signing import EVENT_HEADER, SIGNATURE_HEADER, signature_header

log = logging.getLogger(__name__)

#: Events handed over per fan-out, deliveries sent per receiver per round.
BATCH = 500
#: The most deliveries an outbox keeps (a receiver down for long loses the oldest first).
MAX_OUTBOX = 10_000

_FANOUT = lua_script("webhook_fanout")  # KEYS and ARGV: see webhook_fanout.lua
_FORGET = lua_script("webhook_forget")  # KEYS and ARGV: see webhook_forget.lua

#: Sends one delivery: (url, body, headers, timeout) -> the receiver took it (a 2xx).
Send = Callable[[str, bytes, dict[str, str], float], bool]


def receiver_key(url: str) -> str:
    """The part of a receiver's Redis keys that names it: a digest of its URL."""
    return hashlib.sha256(url.encode()).hexdigest()[:24]


def targets(callback: str | None, subscribers: tuple[str, ...]) -> list[str]:
    """Who receives an event: the standing subscribers, then the migration's callback, once each."""
    return list(dict.fromkeys([*subscribers, *([callback] if callback else [])]))


def retry_delay(attempts: int, longest: float) -> float:
    """Seconds before the next try after ``attempts`` failed ones: 1, 2, 4... up to ``longest``."""
    return float(min(2 ** max(attempts - 1, 0), longest))


def expired(event_id: str, now: float, give_up: float) -> bool:
    """The state change (its stream id holds when, in ms) is older than ``give_up`` seconds."""
    return now - order(event_id)[0] / 1000 > give_up


def _callbacks(store: RecordStore, ids: set[str]) -> dict[str, str | None]:
    """Each migration's callback URL, read from its record."""
    wanted = sorted(ids)
    pairs = zip(wanted, store.get_raw_many(wanted), strict=True)
    return {i: json.loads(raw).get("callback") if raw else None for i, raw in pairs}


def fan_out(store: RecordStore, subscribers: tuple[str, ...]) -> int:
    """Hand the next events to the outboxes; the number handed (0: none, or another won)."""
    client = store.redis
    cursor = client.get(keys.webhook_cursor())
    if cursor is None:  # the first dispatcher with webhooks: start with what comes next
        client.set(keys.webhook_cursor(), latest_event_id(client), nx=True)
        return 0
    found: Any = client.xread({keys.events(): cursor}, count=BATCH)
    entries = found[0][1] if found else []
    if not entries:
        return 0
    callbacks = _callbacks(store, {fields["id"] for _, fields in entries})
    pushes: list[str] = []
    for event_id, fields in entries:
        body = json.dumps(as_event(event_id, fields))
        for url in targets(callbacks.get(fields["id"]), subscribers):
            pushes += [keys.webhook_outbox(receiver_key(url)), url, body]
    moved = client.eval(
        _FANOUT,
        2,
        keys.webhook_cursor(),
        keys.webhook_receivers(),
        str(cursor),
        entries[-1][0],
        str(MAX_OUTBOX),
        *pushes,
    )
    return len(entries) if moved else 0


def receivers(client: Client) -> list[str]:
    return sorted(client.smembers(keys.webhook_receivers()))  # type: ignore[arg-type]


@dataclass
class Lease:
    """One dispatcher's hold on delivering to one receiver (so deliveries stay in order)."""

    client: Client
    receiver: str
    ttl: float
    token: str = ""

    def take(self) -> bool:
        self.token = secrets.token_hex(8)
        key = keys.webhook_lease(self.receiver)
        return bool(self.client.set(key, self.token, nx=True, px=int(self.ttl * 1000)))

    def renew(self) -> bool:
        key = keys.webhook_lease(self.receiver)
        if self.client.get(key) != self.token:
            return False
        return bool(self.client.pexpire(key, int(self.ttl * 1000)))

    def give_back(self) -> None:
        key = keys.webhook_lease(self.receiver)
        if self.client.get(key) == self.token:
            self.client.delete(key)


def deliver(client: Client, url: str, send: Send, settings: Settings) -> int:
    """Send ``url`` its waiting deliveries in order, while it takes them; the number taken."""
    receiver = receiver_key(url)
    retry_key, outbox = keys.webhook_retry(receiver), keys.webhook_outbox(receiver)
    lease = Lease(client, receiver, ttl=4 * settings.webhook_timeout + 10)
    if float(client.hget(retry_key, "next") or 0) > time.time() or not lease.take():  # type: ignore[arg-type]
        return 0
    taken = 0
    try:
        while taken < BATCH and lease.renew():
            head: Any = client.lindex(outbox, 0)
            if head is None:
                client.eval(_FORGET, 3, outbox, keys.webhook_receivers(), retry_key, url)
                break
            event_id = json.loads(head)["event"]
            if expired(event_id, time.time(), settings.webhook_give_up_seconds):
                log.warning("webhook %s: dropped event %s, undelivered too long", url, event_id)
            elif not _send_one(send, url, head.encode(), event_id, settings):
                attempts = int(client.hincrby(retry_key, "attempts", 1))  # type: ignore[arg-type]
                wait = retry_delay(attempts, settings.webhook_retry_max_seconds)
                client.hset(retry_key, "next", str(time.time() + wait))
                break
            else:
                taken += 1
            client.lpop(outbox)
            client.delete(retry_key)
    finally:
        lease.give_back()
    return taken


def _send_one(send: Send, url: str, body: bytes, event_id: str, settings: Settings) -> bool:
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature_header(settings.webhook_secret, body),
        EVENT_HEADER: event_id,
    }
    try:
        return send(url, body, headers, settings.webhook_timeout)
    except Exception as exc:  # a receiver's failure of any kind is retried
        log.info("webhook %s: event %s not delivered: %s", url, event_id, exc)
        return False
