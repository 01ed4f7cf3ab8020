"""The ``/v1/`` routes of the REST API. Thin: each calls the same library functions as the CLI."""

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, JSONResponse

from broker import keys
from tasks import evacuation
from tasks.cancel import request_cancel
from tasks.errors import VMigrateError
from tasks.registry import list_hosts
from tasks.runtime import runtime
from tasks.store import check_stream_id
from tasks.submission import submit
from vmigrate.auth import Auth
from vmigrate.schemas import EvacuateIn, MigrationIn, errors, request_from

router = APIRouter()


def _record(migration_id: str) -> dict[str, Any]:
    record = runtime().store.get(migration_id)
    if record is None:
        raise VMigrateError("MIGRATION_UNKNOWN", f"no migration with id {migration_id!r}")
    return record.public()


LIVE_VIEW = Path(__file__).with_name("static") / "live.html"


@router.get("/", include_in_schema=False, response_class=HTMLResponse)
def live_view() -> HTMLResponse:
    """The live view: hosts, queued, waiting and running migrations, the last ended ones."""
    return HTMLResponse(LIVE_VIEW.read_text())


@router.get("/healthz", include_in_schema=False)
def health() -> dict[str, str]:
    runtime().redis.ping()
    return {"status": "ok"}


@router.get(
    "/v1/hosts",
    summary="List hosts with their protocols, driver and liveness",
    responses=errors(),
)
def hosts(_: Auth) -> list[dict[str, Any]]:
    return [h.as_dict() for h in list_hosts(runtime().redis)]


@router.post(
    "/v1/migrations",
    status_code=202,
    summary="Create a migration",
    responses=errors(400, 404, 409),
)
def create(body: MigrationIn, _: Auth) -> dict[str, Any]:
    return submit(request_from(body)).public()


@router.get(
    "/v1/migrations",
    summary="List migrations, newest first, with filters",
    responses=errors(),
)
def listing(
    _: Auth,
    state: str | None = None,
    domain: str | None = None,
    source: str | None = None,
    destination: str | None = None,
    limit: int = Query(default=100, ge=1, le=10000),
) -> list[dict[str, Any]]:
    wanted = {"state": state, "domain": domain, "source": source, "destination": destination}
    records = [r.public() for r in runtime().store.list(limit)]
    return [r for r in records if all(v is None or r[k] == v for k, v in wanted.items())]


@router.get(
    "/v1/migrations/{migration_id}",
    summary="Read one migration (as `vmigrate show --json`)",
    responses=errors(404),
)
def read(migration_id: str, _: Auth) -> dict[str, Any]:
    return _record(migration_id)


@router.post(
    "/v1/migrations/{migration_id}/cancel",
    status_code=202,
    summary="Cancel a migration",
    responses=errors(404, 409),
)
def cancel(migration_id: str, _: Auth) -> dict[str, Any]:
    _record(migration_id)
    return request_cancel(migration_id).public()


@router.post(
    "/v1/hosts/{host}/evacuate",
    status_code=202,
    summary="Evacuate (or drain) a host",
    responses=errors(400, 404),
)
def evacuate(host: str, body: EvacuateIn, _: Auth) -> JSONResponse:
    if body.drain:
        evacuation.set_drained(host, True)
    items = evacuation.evacuate(host, body.to, body.window)
    return JSONResponse(status_code=202, content={"host": host, "migrations": items})


@router.get(
    "/v1/events",
    summary="State changes after a stream id (default: from the start)",
    responses=errors(400),
)
def events(
    _: Auth,
    since: str = Query(
        default="0",
        description="a stream id (`0`: from the start, or `MS-SEQ` as events carry it), each "
        "part below 2**64; anything else is a 400 `INVALID_SINCE`, as with the CLI",
    ),
    limit: int = Query(default=100, ge=1, le=10000),
) -> list[dict[str, Any]]:
    after = check_stream_id(since)
    found: list[Any] = runtime().redis.xread({keys.events(): after}, count=limit) or []  # type: ignore[assignment]
    return [{"event": event_id, **fields} for _s, entries in found for event_id, fields in entries]
