"""The one Celery app of vmigrate, declared once.

JSON only (pickle is refused), late acknowledgement with reject-on-worker-lost, explicit queues for
every task, and nothing that waits on results: tasks hand work to each other by publishing, and the
migration record in Redis is the source of truth.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Queue

from broker import queues
from broker.embedded import home_directory, resolve_broker_url
from broker.sentinel import SentinelURL, is_sentinel, parse_sentinel_url, sentinel_kwargs
from broker.settings import Settings, load_settings
from broker.transport import use_for_sentinel_urls

TASK_MODULES = ["tasks.entrypoints"]
__all__ = ["create_app", "get_app", "home_directory", "resolve_broker_url"]


def celery_config(settings: Settings, broker_url: str) -> dict[str, Any]:
    transport: dict[str, Any] = {
        "visibility_timeout": settings.visibility_timeout,
        "socket_timeout": 30,
        "socket_connect_timeout": 10,
        "health_check_interval": 25,
    }
    config: dict[str, Any] = {
        "broker_url": broker_url,
        "broker_transport": "broker.transport:Transport",
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_default_queue": queues.UNROUTED,
        "task_create_missing_queues": True,
        "task_queues": [Queue(queues.DISPATCHER), Queue(queues.UNROUTED)],
        "worker_hijack_root_logger": False,
        "worker_enable_remote_control": True,
        "broker_pool_limit": 10,
    }
    if is_sentinel(broker_url):
        use_for_sentinel_urls()
        address = parse_sentinel_url(broker_url)
        config.update(_sentinel_config(address))
        transport["master_name"] = settings.sentinel_master
        transport["sentinel_kwargs"] = sentinel_kwargs(address, settings.sentinel_password)
    config.update(settings.celery)
    return config


def _sentinel_config(address: SentinelURL) -> dict[str, Any]:
    """kombu's Sentinel transport, given what broker/sentinel.py read from the URL."""
    config: dict[str, Any] = {
        "broker_url": address.kombu_url(),
        "broker_transport": "broker.transport:SentinelTransport",
    }
    if address.tls:
        config["broker_use_ssl"] = address.tls_options()
    return config


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or load_settings()
    app = Celery("vmigrate", include=TASK_MODULES)
    app.conf.update(celery_config(settings, resolve_broker_url(settings)))
    app.vmigrate_settings = settings
    return app


_app: Celery | None = None


def get_app() -> Celery:
    """The process's one Celery app, created on first use."""
    global _app  # noqa: PLW0603 (one app per process, by design)
    if _app is None:
        _app = create_app()
    return _app
