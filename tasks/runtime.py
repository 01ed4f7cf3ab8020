"""The process-wide handles tasks need: the Celery app, settings, Redis and the record store.

``records()`` gives the settings, Redis and the record store alone, without loading Celery: what
the read-only commands (``hosts``, ``list``, ``show``, ``domains``) and the event followers need.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from broker.connection import Client, redis_client
from broker.embedded import home_directory, resolve_broker_url
from broker.security import Keyring, load_keyring
from broker.settings import Settings, load_settings
from tasks.store import RecordStore

if TYPE_CHECKING:
    from celery import Celery


@dataclass(frozen=True)
class Records:
    settings: Settings
    redis: Client
    store: RecordStore


@dataclass(frozen=True)
class Runtime:
    app: Celery
    settings: Settings
    redis: Client
    store: RecordStore
    keyring: Keyring


def client_for(settings: Settings) -> Client:
    """The shared Redis client of the configured broker (or of the embedded one)."""
    url = resolve_broker_url(settings)
    return redis_client(url, settings.sentinel_master, settings.sentinel_password)


@functools.cache
def records() -> Records:
    """Settings, Redis and the record store of this process, without Celery."""
    settings = load_settings()
    client = client_for(settings)
    return Records(settings, client, RecordStore(client, settings.record_ttl))


@functools.cache
def runtime() -> Runtime:
    from broker.app import get_app  # noqa: PLC0415 (created on first use, not at import)

    app = get_app()

    settings: Settings = app.vmigrate_settings
    client = client_for(settings)
    keyring = load_keyring(settings.signing_keys, settings.signing_key_id, home_directory())
    return Runtime(app, settings, client, RecordStore(client, settings.record_ttl), keyring)
