"""Bearer-token authentication for the REST API: constant-time comparison, tokens never logged."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tasks.errors import VMigrateError
from tasks.runtime import runtime

_bearer = HTTPBearer(auto_error=False)


def authorize(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Compare the offered token with every configured one (all of them, whatever matches)."""
    tokens = runtime().settings.api_tokens
    offered = credentials.credentials.encode() if credentials else b""
    matches = [hmac.compare_digest(offered, token.encode()) for token in tokens]
    if not any(matches):
        raise VMigrateError("UNAUTHORIZED", "a valid bearer token is required")


Auth = Annotated[None, Depends(authorize)]
