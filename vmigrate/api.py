"""The REST API for other applications: ``vmigrate api --port N`` serves it under ``/v1/``.

Bearer-token authentication (tokens from ``[api] tokens`` or ``VMIGRATE_API_TOKENS``, compared in
constant time, never logged). Bad input is a 4xx JSON error ``{"error": {"code", "message"}}``.
The OpenAPI document is at ``/openapi.json``, its interactive form at ``/docs``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from tasks.errors import VMigrateError
from tasks.runtime import runtime
from vmigrate import routes

NOT_FOUND = {"HOST_UNKNOWN", "MIGRATION_UNKNOWN"}
CONFLICT = {"MIGRATION_IN_PROGRESS", "DUPLICATE_ID"}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def create_api() -> FastAPI:
    api = FastAPI(title="vmigrate", version="1", description=__doc__)

    @api.exception_handler(VMigrateError)
    async def refused(_: Request, exc: VMigrateError) -> JSONResponse:
        status = (
            401
            if exc.code == "UNAUTHORIZED"
            else 404
            if exc.code in NOT_FOUND
            else (409 if exc.code in CONFLICT else 400)
        )
        response = _error(status, exc.code, exc.message)
        if status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @api.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return _error(422, "INVALID_REQUEST", problems)

    api.include_router(routes.router)
    return api


def serve(bind: str, port: int) -> None:
    import uvicorn  # noqa: PLC0415 (heavy: only when the API serves)

    if not runtime().settings.api_tokens:
        raise VMigrateError("NO_API_TOKENS", "set [api] tokens or VMIGRATE_API_TOKENS first")
    # An open event stream never ends by itself: shutting down waits for it 5 s at most.
    uvicorn.run(
        create_api(), host=bind, port=port, log_level="warning", timeout_graceful_shutdown=5
    )
