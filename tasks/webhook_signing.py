"""How a webhook delivery is signed, and how a receiver checks it (standard library only).

Each delivery is a ``POST`` of a JSON body with the header
``X-Vmigrate-Signature: t=<unix seconds>,v1=<hex>``, where ``<hex>`` is the lowercase hex
HMAC-SHA256, keyed with the fleet's ``[webhooks] secret``, of the ASCII timestamp, a dot, and the
body's exact bytes: ``HMAC(secret, b"1764590404." + body)``. A receiver recomputes it over the
bytes it received, compares in constant time, and refuses a timestamp too far from its clock
(a replayed delivery). ``X-Vmigrate-Event`` carries the event's id, also in the body as
``event``: a receiver that has seen it already drops the duplicate.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

SIGNATURE_HEADER = "X-Vmigrate-Signature"
EVENT_HEADER = "X-Vmigrate-Event"
#: A receiver's default tolerance between the signature's timestamp and its own clock.
TOLERANCE_SECONDS = 300


class BadSignature(ValueError):
    """The delivery is not signed with the shared secret, or too old."""


def digest(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Vmigrate-Signature`` value for ``body``, signed now (or at ``timestamp``)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return f"t={stamp},v1={digest(secret, stamp, body)}"


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance: float = TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Raise ``BadSignature`` unless ``body`` carries a valid, recent signature of ``secret``.
    ``headers``: the request's headers (any mapping; the name is matched case-insensitively)."""
    value = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), "")
    parts = dict(p.split("=", 1) for p in value.split(",") if "=" in p)
    try:
        stamp = int(parts["t"])
    except (KeyError, ValueError):
        raise BadSignature(f"no {SIGNATURE_HEADER} header with t=...,v1=...") from None
    if abs((time.time() if now is None else now) - stamp) > tolerance:
        raise BadSignature(f"the signature's timestamp {stamp} is more than {tolerance} s away")
    if not hmac.compare_digest(parts.get("v1", ""), digest(secret, stamp, body)):
        raise BadSignature("the signature does not match the body and the secret")
