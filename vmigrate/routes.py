"""The ``/v1/`` routes of the REST API. Thin: each calls the same library functions as the CLI."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

from broker import keys
from tasks import evacuation
from tasks.bounds import MAX_ID_LENGTH
from tasks.cancel import request_cancel
from tasks.errors import VMigrateError
from tasks.events import as_event
from tasks.registry import list_hosts
from tasks.runtime import records, runtime
from tasks.store import check_stream_id
from tasks.submission import submit
from vmigrate.auth import Auth
from vmigrate.responses import EvacuationOut, EventOut, HostOut, MigrationOut
from vmigrate.schemas import EvacuateIn, MigrationIn, errors, request_from
from vmigrate.stream import StreamStart, follow, start_stream

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
    response_model=list[HostOut],
    responses=errors(),
)
def hosts(_: Auth) -> list[dict[str, Any]]:
    return [h.as_dict() for h in list_hosts(runtime().redis)]


@router.post(
    "/v1/migrations",
    status_code=202,
    summary="Create a migration",
    response_model=MigrationOut,
    responses=errors(400, 404, 409),
)
def create(body: MigrationIn, _: Auth) -> dict[str, Any]:
    return submit(request_from(body)).public()


@router.get(
    "/v1/migrations",
    summary="List migrations, newest first, with filters",
    response_model=list[MigrationOut],
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
    response_model=MigrationOut,
    responses=errors(404),
)
def read(migration_id: str, _: Auth) -> dict[str, Any]:
    return _record(migration_id)


@router.post(
    "/v1/migrations/{migration_id}/cancel",
    status_code=202,
    summary="Cancel a migration",
    response_model=MigrationOut,
    responses=errors(404, 409),
)
def cancel(migration_id: str, _: Auth) -> dict[str, Any]:
    _record(migration_id)
    return request_cancel(migration_id).public()


@router.post(
    "/v1/hosts/{host}/evacuate",
    status_code=202,
    summary="Evacuate (or drain) a host",
    response_model=EvacuationOut,
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
    response_model=list[EventOut],
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
    return [as_event(event_id, fields) for _s, entries in found for event_id, fields in entries]


def stream_start(
    _: Auth,
    since: str | None = Query(
        default=None,
        description="a stream id to start after (default: the newest event, so what comes next)",
    ),
    migration: str | None = Query(
        default=None,
        max_length=MAX_ID_LENGTH,
        description="follow this migration only: its current state first, and the stream ends "
        "when it has ended",
    ),
    last_event_id: str | None = Header(
        default=None,
        alias="Last-Event-ID",
        description="resume after this stream id (sent by an `EventSource` that reconnects); "
        "takes precedence over `since`",
    ),
) -> StreamStart:
    return start_stream(records(), since, last_event_id, migration)


@router.get(
    "/v1/events/stream",
    response_class=EventSourceResponse,
    summary="State changes as server-sent events, live (resumable with Last-Event-ID)",
    description="Each state change is an SSE message `event: state`, its `id:` the stream id, "
    "its `data:` the JSON object `GET /v1/events` lists. A comment line (`: ping`) every 15 s "
    "keeps idle connections open.",
    responses=errors(400, 404, streams=True),
)
async def stream(
    start: Annotated[StreamStart, Depends(stream_start)],
) -> AsyncIterator[EventOut]:
    async for event in follow(records(), start):
        yield ServerSentEvent(data=event, event="state", id=event["event"])  # type: ignore[misc]
