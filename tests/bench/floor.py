"""The floor: a bare Celery chain with vmigrate's hops, queues and worker settings, doing nothing.

Each hop publishes the next one from the worker, exactly as a chain's worker publishes its next link.

``celery -A tests.bench.floor worker -Q floor.host.a ...``: each hop is a no-op task; the last one
writes a key the client waits for, as vmigrate's client waits for the record.
"""

from __future__ import annotations

import os

import redis
from celery import Celery

from broker.app import celery_config
from broker.settings import Settings

URL = os.environ.get("FLOOR_BROKER_URL", "redis://127.0.0.1:6379/15")
app = Celery("floor")
app.conf.update(celery_config(Settings(), URL))
app.conf.task_default_queue = "floor.unrouted"
_client = redis.Redis.from_url(URL)


@app.task(name="floor.hop")
def hop(run_id: str, remaining: list[str]) -> None:
    """Do nothing, then hand over to the next queue, as a chain's worker publishes its next link."""
    if remaining:
        app.send_task("floor.hop", args=[run_id, remaining[1:]], queue=remaining[0])
    else:
        _client.rpush(f"floor:done:{run_id}", "1")
