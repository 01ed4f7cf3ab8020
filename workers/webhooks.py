"""The webhook deliverer: a thread of every dispatcher (``tasks/webhooks.py`` says what it does).

It owns its waits: a receiver that is slow or down holds one of its few sending threads for at
most ``webhook_timeout``, and never a migration's task.
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata

from broker.settings import Settings
from tasks.store import RecordStore
from tasks.webhooks import deliver, fan_out, receivers

log = logging.getLogger(__name__)

ROUND_SECONDS = 0.5
SENDERS = 4


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a 2xx: following it could reach an address not allowed."""

    def redirect_request(self, *_args: object, **_kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)
_AGENT = f"vmigrate/{metadata.version('vmigrate')}"


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> bool:
    """POST one delivery; True when the receiver answered 2xx."""
    request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310 (allow-listed)
    for name, value in {**headers, "User-Agent": _AGENT}.items():
        request.add_header(name, value)
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            status: int = answer.status
            return 200 <= status < 300
    except urllib.error.HTTPError as exc:
        log.info("webhook %s answered %s", url, exc.code)
        return False


def wanted(settings: Settings) -> bool:
    """Webhooks are configured: some callback may be allowed, or someone subscribed."""
    return bool(settings.webhook_allow or settings.webhook_subscribers)


def run_webhooks(stop: threading.Event, store: RecordStore, settings: Settings) -> None:
    """Fan out and deliver every ``ROUND_SECONDS`` until ``stop`` is set."""
    client = store.redis
    with ThreadPoolExecutor(SENDERS, thread_name_prefix="webhook") as senders:
        while not stop.wait(ROUND_SECONDS):
            try:
                while fan_out(store, settings.webhook_subscribers):
                    pass
                urls = receivers(client)
                list(senders.map(lambda url: deliver(client, url, post, settings), urls))
            except Exception:  # a broker blip: the next round retries
                log.warning("webhook round failed", exc_info=True)
