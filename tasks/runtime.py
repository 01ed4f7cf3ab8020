"""The process-wide handles tasks need: the Celery app, settings, Redis and the record store."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from celery import Celery

from broker.app import home_directory, resolve_broker_url
from broker.connection import Client, redis_client
from broker.security import Keyring, load_keyring
from broker.settings import Settings
from tasks.store import RecordStore


@dataclass(frozen=True)
class Runtime:
    app: Celery
    settings: Settings
    redis: Client
    store: RecordStore
    keyring: Keyring


@functools.cache
def runtime() -> Runtime:
    from broker.app import get_app  # noqa: PLC0415 (created on first use, not at import)

    app = get_app()

    settings: Settings = app.vmigrate_settings
    client = redis_client(resolve_broker_url(settings))
    keyring = load_keyring(settings.signing_keys, settings.signing_key_id, home_directory())
    return Runtime(app, settings, client, RecordStore(client, settings.record_ttl), keyring)
