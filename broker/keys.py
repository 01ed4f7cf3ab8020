"""Every Redis key vmigrate uses, built here and nowhere else.

All keys share the ``vmigrate:`` prefix so an operator can see, count and ACL them at once.
Celery's and kombu's own keys (queue lists, ``unacked``) are not built here: they belong to kombu.
"""

from __future__ import annotations

PREFIX = "vmigrate"


def host_info(host: str) -> str:
    """JSON registration of a host: protocols, driver, capacity, software version."""
    return f"{PREFIX}:host:{host}:info"


def host_endpoint(host: str) -> str:
    """JSON of how peers reach a host: migration address and port range, and its hypervisor
    daemon's URI where it has one. A key of its own, so releases that read only ``info`` (whose
    reader refuses unknown fields) keep reading registrations."""
    return f"{PREFIX}:host:{host}:endpoint"


def host_alive(host: str) -> str:
    """Expiring heartbeat key; present while the host's worker is alive."""
    return f"{PREFIX}:host:{host}:alive"


def host_last_seen(host: str) -> str:
    """Epoch of the host's last heartbeat (no expiry: tells how long a dead host has been down)."""
    return f"{PREFIX}:host:{host}:last-seen"


def host_domains(host: str) -> str:
    """JSON inventory of the domains a host runs, rewritten after every change."""
    return f"{PREFIX}:host:{host}:domains"


def hosts() -> str:
    """Set of every host name that ever registered."""
    return f"{PREFIX}:hosts"


def migration(migration_id: str) -> str:
    """JSON migration record: the source of truth for one migration."""
    return f"{PREFIX}:migration:{migration_id}"


def admitted_not_ended() -> str:
    """Set of migration ids admitted and not yet ended (what the sweeper watches)."""
    return f"{PREFIX}:running"


def admitted_indexed() -> str:
    """Expiring marker: ``admitted_not_ended`` was rebuilt from ``not_ended`` recently (after an
    upgrade, or a record written by a version that did not keep the set)."""
    return f"{PREFIX}:running-indexed"


def migrations() -> str:
    """Sorted set of migration ids scored by creation time."""
    return f"{PREFIX}:migrations"


def active_domain(host: str, domain: str) -> str:
    """Fleet-level guard: the id of the one migration that may move ``domain`` off ``host``."""
    return f"{PREFIX}:active:{host}:{domain}"


def reply(request_id: str) -> str:
    """List a host pushes its answer to a control command onto (the CLI waits on it)."""
    return f"{PREFIX}:reply:{request_id}"


def queue() -> str:
    """Hash of queued migrations: id -> compact JSON entry (hosts, priority, times, windows)."""
    return f"{PREFIX}:queue"


def queue_line(group: str) -> str:
    """Sorted set of the queued migrations needing the windows ``group`` (names joined by ``|``,
    ``-`` for none), scored by admission order: a tick reads only the front of each line."""
    return f"{PREFIX}:queue:line:{group}"


def queue_lines() -> str:
    """Set of the window groups that have a line."""
    return f"{PREFIX}:queue:lines"


def queue_deadlines() -> str:
    """Sorted set of queued migrations that have a deadline, scored by it (epoch seconds)."""
    return f"{PREFIX}:queue:deadlines"


def slots() -> str:
    """Hash of admitted migrations holding a slot: id -> JSON (source, destination, bandwidth)."""
    return f"{PREFIX}:slots"


def events() -> str:
    """Stream of migration state changes, for other applications (XREAD from any point)."""
    return f"{PREFIX}:events"


def host_drained(host: str) -> str:
    """Present while a host is drained: nothing new is placed on it."""
    return f"{PREFIX}:host:{host}:drained"


def tick_lock() -> str:
    """Held by the one process running a tick triggered by a finished migration (expiring)."""
    return f"{PREFIX}:tick-lock"


def tick_again() -> str:
    """Set when a triggered tick found another running: that one ticks once more when done."""
    return f"{PREFIX}:tick-again"


def not_ended() -> str:
    """Set of the ids of migrations not yet ended, queued and waiting ones included: what
    ``admitted_not_ended`` is rebuilt from."""
    return f"{PREFIX}:active"


def sweep_lock() -> str:
    return f"{PREFIX}:sweep-lock"


def nonce(value: str) -> str:
    """A message's single-use id, kept until the message expires (replays are refused)."""
    return f"{PREFIX}:nonce:{value}"


def webhook_cursor() -> str:
    """The id of the last event handed to the webhook outboxes (compare-and-set by dispatchers)."""
    return f"{PREFIX}:webhook:cursor"


def webhook_receivers() -> str:
    """Set of the URLs with an outbox (deliveries waiting)."""
    return f"{PREFIX}:webhook:receivers"


def webhook_outbox(receiver: str) -> str:
    """List of one receiver's deliveries, oldest first (``receiver``: a digest of its URL)."""
    return f"{PREFIX}:webhook:{receiver}:outbox"


def webhook_retry(receiver: str) -> str:
    """Hash of one receiver's failed attempts at its oldest delivery, and when to try next."""
    return f"{PREFIX}:webhook:{receiver}:retry"


def webhook_lease(receiver: str) -> str:
    """Held (expiring) by the one dispatcher delivering to a receiver, which keeps them in order."""
    return f"{PREFIX}:webhook:{receiver}:lease"


def replication_mark() -> str:
    """Written just before a ``WAIT``, so the wait covers every write made before it."""
    return f"{PREFIX}:replication-mark"
