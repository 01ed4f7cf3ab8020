"""Message authenticity: only the fleet's own components can make a host (or a dispatcher) act.

Every vmigrate message carries ``auth = {kid, exp, nonce, sig}``: an HMAC-SHA256, with a key the
fleet's components hold, over the task name, the queue it was sent to, its arguments, an expiry and
a single-use nonce. The receiver checks all of it before acting, and refuses (and logs) unsigned,
forged, relabelled (another task or host), expired and replayed messages. Celery's own ``auth``
serializer is not enough on its own: it signs only the body, so a captured message can be replayed
or relabelled.

Keys are files named in the configuration (``signing_keys = {ID = "/path"}``, ``signing_key_id``);
never taken from messages. With none configured, a key is generated once in
``$VMIGRATE_HOME/keys/local.key`` (mode 0600), which serves every component on one machine; a fleet
distributes its key files (see docs/operations.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker import keys
from broker.connection import Client

log = logging.getLogger(__name__)
LOCAL_KEY_ID = "local"


class Unauthentic(Exception):
    """A message failed verification; the reason is safe to log."""


@dataclass(frozen=True)
class Keyring:
    signing_id: str
    keys: dict[str, bytes]

    def sign(self, task: str, queue: str, args: list[Any], ttl: float) -> dict[str, Any]:
        auth = {
            "kid": self.signing_id,
            "exp": round(time.time() + ttl, 3),
            "nonce": secrets.token_hex(16),
        }
        auth["sig"] = self._mac(self.keys[self.signing_id], task, queue, args, auth)
        return auth

    @staticmethod
    def _mac(key: bytes, task: str, queue: str, args: list[Any], auth: dict[str, Any]) -> str:
        body = json.dumps(
            {
                "task": task,
                "queue": queue,
                "args": args,
                "kid": auth["kid"],
                "exp": auth["exp"],
                "nonce": auth["nonce"],
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()

    def verify(self, task: str, queue: str, args: list[Any], auth: Any, client: Client) -> None:
        """Raise ``Unauthentic`` unless ``auth`` is a valid, fresh, first-seen signature."""
        if not isinstance(auth, dict) or not {"kid", "exp", "nonce", "sig"} <= set(auth):
            raise Unauthentic("unsigned message")
        key = self.keys.get(str(auth["kid"]))
        if key is None:
            raise Unauthentic(f"unknown signing key {str(auth['kid'])[:40]!r}")
        expected = self._mac(key, task, queue, args, auth)
        if not hmac.compare_digest(expected, str(auth["sig"])):
            raise Unauthentic("bad signature (forged, altered, or sent to another task or queue)")
        remaining = float(auth["exp"]) - time.time()
        if remaining <= 0:
            raise Unauthentic("expired message")
        if not client.set(keys.nonce(str(auth["nonce"])), "1", nx=True, ex=int(remaining) + 60):
            raise Unauthentic("replayed message (its single-use id was seen before)")


def _read_key(path: Path) -> bytes:
    try:
        data = path.read_bytes().strip()
    except OSError as exc:
        raise ValueError(f"cannot read signing key {path}: {exc}") from None
    if len(data) < 32:
        raise ValueError(f"signing key {path} is too short (at least 32 bytes)")
    return data


def local_key(home: Path) -> Path:
    """The generated single-machine key, created on first use with mode 0600."""
    path = home / "keys" / f"{LOCAL_KEY_ID}.key"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    draft = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    try:
        os.link(draft, path)  # atomic, and loses to a key another process published first
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path


def load_keyring(signing_keys: dict[str, str], signing_key_id: str | None, home: Path) -> Keyring:
    if not signing_keys:
        return Keyring(LOCAL_KEY_ID, {LOCAL_KEY_ID: _read_key(local_key(home))})
    loaded = {kid: _read_key(Path(path)) for kid, path in signing_keys.items()}
    chosen = signing_key_id or sorted(loaded)[0]
    if chosen not in loaded:
        raise ValueError(f"signing_key_id {chosen!r} is not among signing_keys")
    return Keyring(chosen, loaded)
