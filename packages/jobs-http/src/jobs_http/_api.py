"""The `/api/jobs` endpoints (the seed's six and cancel), thin over `jobs_core.Jobs`.

Handlers only translate: wire in, one `Jobs` call, wire out. Validation of topics,
times, retries and paging lives in the core (and in `_wire` for the body's JSON);
errors are turned into responses by `_exceptions`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import anyio.to_thread
from litestar import MediaType, Request, Response, delete, get, post, put
from litestar.datastructures import CacheControlHeader, ResponseHeader
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import FromPath, Parameter
from litestar.router import Router

from jobs_core import (
    MAX_PAGE_SIZE,
    MAX_RETRIES_LIMIT,
    MAX_TOPIC_LENGTH,
    MAX_UNIQUE_KEY_LENGTH,
    FieldKind,
    Jobs,
    JobStatus,
    TopicInfo,
)
from jobs_http._auth import Authenticate, superuser_guard
from jobs_http._query import single_valued_query
from jobs_http._wire import (
    ENQUEUE_BODY,
    BodyField,
    ErrorOut,
    JobOut,
    JobPageOut,
    StatsOut,
    TopicOut,
    TopicsOut,
    encode_page,
    parse_enqueue,
    parse_limit,
)

#: Bytes one list page holds by default (the JSON text of its jobs' payloads, attempt
#: histories and results); the page stops before the job that would pass it, and says
#: `truncated`.
PAGE_BYTES = 8 * 2**20

#: Largest `offset` accepted (fits every database's 64-bit integers with room to spare).
MAX_OFFSET = 2**62

_JSON_TYPES = frozenset({"application/json"})


def _error(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorOut, description=description, generate_examples=False)


_COMMON = {
    401: _error("Missing, malformed or wrong superuser token."),
    500: _error("Unexpected server error (details are only in the server log)."),
    503: _error("The job store is unreachable; retry later."),
}
_BAD_PARAMS = {400: _error("Invalid query or path parameter.")}
_NOT_FOUND = {404: _error("No job has this id.")}
_CONFLICT = {409: _error("The job's status does not allow this change.")}
_REQUEUE_CONFLICT = {
    409: _error(
        "The job's status does not allow a requeue, or another pending or processing job"
        " of its topic holds its unique key."
    )
}


@dataclass
class _EnqueueOperation(Operation):
    """Documents the enqueue body, which the handler reads and validates itself."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description="The job to queue. Fields not listed here are refused.",
            content={"application/json": OpenAPIMediaType(schema=_ENQUEUE_SCHEMA)},
        )


#: Each body field's own rule, beyond its kind: constraints and a note for the reader.
_BODY_RULES: dict[str, dict[str, Any]] = {
    "topic": {
        "min_length": 1,
        "max_length": MAX_TOPIC_LENGTH,
        "pattern": r"^[A-Za-z0-9._:/\-]+$",
        "note": "E.g. send_email.",
    },
    "payload": {"note": "Default null; at most 1 MiB serialized."},
    "max_retries": {"minimum": 0, "maximum": MAX_RETRIES_LIMIT},
    "unique_key": {
        "min_length": 1,
        "max_length": MAX_UNIQUE_KEY_LENGTH,
        "note": "A duplicate answers 200 with the job holding the key and the header"
        " Jobs-Duplicate: true; nothing is stored.",
    },
}

#: The header a duplicate enqueue (a unique key an active job holds) answers with.
DUPLICATE_HEADER = "Jobs-Duplicate"

#: How each kind is written in a request body (JSON Schema type, format, a note): every
#: kind a body field may have, those `_wire` can read (not the attempt history).
_BODY_KINDS: dict[FieldKind, dict[str, Any]] = {
    FieldKind.ID: {"type": OpenAPIType.STRING},
    FieldKind.TEXT: {"type": OpenAPIType.STRING},
    FieldKind.JSON: {},
    FieldKind.TIME: {
        "type": OpenAPIType.STRING,
        "format": "date-time",
        "note": "RFC 3339 time with offset.",
    },
    FieldKind.INT: {"type": OpenAPIType.INTEGER},
    FieldKind.STATUS: {"type": OpenAPIType.STRING, "enum": [status.value for status in JobStatus]},
}


def _body_schema(field: BodyField) -> Schema:
    """One enqueue body field's schema: type from its kind, range from its bounds, text
    from its doc and rule."""
    kind = dict(_BODY_KINDS[field.spec.kind])
    rule = dict(_BODY_RULES.get(field.name, {}))
    if field.spec.bounds is not None:  # a range the job schema declares (priority)
        rule = {"minimum": field.spec.bounds[0], "maximum": field.spec.bounds[1], **rule}
    notes = (kind.pop("note", ""), field.spec.doc, rule.pop("note", ""))
    if field.nullable and "type" in kind:
        kind["type"] = [kind["type"], OpenAPIType.NULL]
    return Schema(**kind, **rule, description=" ".join(note for note in notes if note))


_ENQUEUE_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=[field.name for field in ENQUEUE_BODY if field.required],
    additional_properties=False,
    properties={field.name: _body_schema(field) for field in ENQUEUE_BODY},
)


def check_json(request: Request[Any, Any, Any]) -> None:
    media_type, _ = request.content_type
    if media_type.lower() not in _JSON_TYPES:
        raise HTTPException(
            status_code=415,
            detail="Content-Type must be application/json.",
        )


def _check_digits(request: Request[Any, Any, Any], *names: str) -> None:
    """Refuse paging values that are not plain digits (`1e3`, `+5`, ` 5` all parse as ints)."""
    problems = [
        {"key": name, "message": "must be a non-negative integer written in digits"}
        for name in names
        if any(
            not (value.isascii() and value.isdigit())
            for value in request.query_params.getall(name, [])
        )
    ]
    if problems:
        raise ValidationException("Invalid request parameters.", extra=problems)


def _check_boolean(request: Request[Any, Any, Any], *names: str) -> None:
    """Refuse booleans other than `true` and `false` (Litestar also takes `1`, `yes`, ...)."""
    problems = [
        {"key": name, "message": "must be true or false"}
        for name in names
        if any(value not in ("true", "false") for value in request.query_params.getall(name, []))
    ]
    if problems:
        raise ValidationException("Invalid request parameters.", extra=problems)


@post(
    "/enqueue",
    status_code=200,
    summary="Enqueue a job",
    operation_class=_EnqueueOperation,
    response_headers=[
        ResponseHeader(
            name=DUPLICATE_HEADER,
            documentation_only=True,
            description="`true` when the body's `unique_key` was held by a pending or"
            " processing job of the topic: nothing was stored, and the job shown is that"
            " one. Absent when the job is new.",
        )
    ],
    responses={
        **_COMMON,
        400: _error("Body is not valid JSON, has unknown fields, or a field is invalid."),
        413: _error("Body or payload larger than the limit."),
        415: _error("Content-Type is not application/json."),
    },
)
async def enqueue(request: Request[Any, Any, Any], jobs: NamedDependency[Jobs]) -> Response[JobOut]:
    """Queue a job: `pending`, due at `run_at` (default now). With a `unique_key` held by
    an active job of the topic, store nothing and answer that job (header
    `Jobs-Duplicate: true`)."""
    check_json(request)
    body = parse_enqueue(await request.body())
    answer = await jobs.submit(body.topic, body.payload, body.options)
    headers = {} if answer.new else {DUPLICATE_HEADER: "true"}
    return Response(JobOut.from_job(answer.job), status_code=200, headers=headers)


@get(
    "/",
    summary="List jobs",
    responses={
        200: ResponseSpec(
            data_container=JobPageOut,
            description="A page, newest first; `truncated` when the byte budget cut it short.",
            generate_examples=False,
        ),
        **_COMMON,
        **_BAD_PARAMS,
    },
)
async def list_jobs(
    *,
    request: Request[Any, Any, Any],
    jobs: NamedDependency[Jobs],
    page_bytes: NamedDependency[int],
    topic: Annotated[str | None, Parameter(description="Only jobs of this topic.")] = None,
    status: Annotated[JobStatus | None, Parameter(description="Only jobs in this status.")] = None,
    limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE_SIZE, description="Page size (1-500).")] = 20,
    offset: Annotated[int, Parameter(ge=0, le=MAX_OFFSET, description="Jobs to skip.")] = 0,
    payloads: Annotated[
        bool,
        Parameter(
            description="`false` lists jobs without their payloads, attempt histories and"
            " results (`payload` and `result` null, `errors` empty)."
        ),
    ] = True,
) -> Response[bytes]:
    """A page of jobs, newest first, with the total under the same filters.

    The page's payloads, histories and results are bounded in bytes (`PAGE_BYTES` by
    default): the page stops
    before the job that would pass the budget and says `truncated`; it holds at least
    one job. The JSON is encoded on a worker thread, one job at a time, so a big page
    does not hold up the event loop.
    """
    _check_digits(request, "limit", "offset")
    _check_boolean(request, "payloads")
    page = await jobs.list(
        topic=topic,
        status=status,
        limit=limit,
        offset=offset,
        payloads=payloads,
        max_payload_bytes=page_bytes,
    )
    body = await anyio.to_thread.run_sync(encode_page, JobPageOut.from_page(page))
    return Response(content=body, media_type=MediaType.JSON)


@get("/stats", summary="Job statistics", responses=_COMMON)
async def stats(jobs: NamedDependency[Jobs]) -> StatsOut:
    """Counts per status, total and success rate."""
    return StatsOut.from_stats(await jobs.stats())


@get("/{job_id:str}", summary="Get a job", responses={**_COMMON, **_BAD_PARAMS, **_NOT_FOUND})
async def get_job(jobs: NamedDependency[Jobs], job_id: FromPath[str]) -> JobOut:
    """One job, with its payload and last error."""
    return JobOut.from_job(await jobs.get(job_id))


@post(
    "/{job_id:str}/requeue",
    status_code=200,
    summary="Requeue a failed or cancelled job",
    responses={**_COMMON, **_BAD_PARAMS, **_NOT_FOUND, **_REQUEUE_CONFLICT},
)
async def requeue(jobs: NamedDependency[Jobs], job_id: FromPath[str]) -> JobOut:
    """Give a `failed` or `cancelled` job a fresh start: `pending`, due now, retries
    reset to 0."""
    return JobOut.from_job(await jobs.requeue(job_id))


@post(
    "/{job_id:str}/cancel",
    status_code=200,
    summary="Cancel a pending or processing job",
    responses={**_COMMON, **_BAD_PARAMS, **_NOT_FOUND, **_CONFLICT},
)
async def cancel(jobs: NamedDependency[Jobs], job_id: FromPath[str]) -> JobOut:
    """Cancel a job: a `pending` one is `cancelled` at once; a `processing` one stays
    `processing` with `cancel_requested` set, and its worker stops it at its next lease
    renewal. Final jobs are a 409."""
    return JobOut.from_job(await jobs.cancel(job_id))


@delete(
    "/{job_id:str}",
    status_code=204,
    summary="Delete a job",
    responses={**_COMMON, **_BAD_PARAMS, **_NOT_FOUND, **_CONFLICT},
)
async def delete_job(jobs: NamedDependency[Jobs], job_id: FromPath[str]) -> None:
    """Delete a `pending`, `failed` or `cancelled` job."""
    await jobs.delete(job_id)


# -- /api/topics ------------------------------------------------------------------


def _topic_out(infos: Sequence[TopicInfo], topic: str) -> TopicOut:
    """The wire view of `topic` among `infos` (a topic without jobs or policy: zeros)."""
    for info in infos:
        if info.topic == topic:
            return TopicOut.from_info(info)
    return TopicOut.from_info(TopicInfo(topic=topic, counts=dict.fromkeys(JobStatus, 0)))


@get("/", summary="List topics", responses=_COMMON)
async def list_topics(jobs: NamedDependency[Jobs]) -> TopicsOut:
    """Every topic with jobs or a stored policy, by name: its jobs counted per status,
    whether it is paused, and its global limit (`max_running`)."""
    return TopicsOut(items=[TopicOut.from_info(info) for info in await jobs.list_topics()])


@post(
    "/{topic:str}/pause",
    status_code=200,
    summary="Pause a topic",
    responses={**_COMMON, **_BAD_PARAMS},
)
async def pause_topic(jobs: NamedDependency[Jobs], topic: FromPath[str]) -> TopicOut:
    """Stop every worker claiming the topic's jobs (from their next poll); running jobs
    finish, enqueueing still works. Idempotent."""
    await jobs.pause(topic)
    return _topic_out(await jobs.list_topics(), topic)


@post(
    "/{topic:str}/resume",
    status_code=200,
    summary="Resume a topic",
    responses={**_COMMON, **_BAD_PARAMS},
)
async def resume_topic(jobs: NamedDependency[Jobs], topic: FromPath[str]) -> TopicOut:
    """Let workers claim the topic's jobs again. Idempotent."""
    await jobs.resume(topic)
    return _topic_out(await jobs.list_topics(), topic)


@dataclass
class _LimitOperation(Operation):
    """Documents the limit body, which the handler reads and validates itself."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description="The topic's global limit. Fields not listed here are refused.",
            content={
                "application/json": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        required=["max_running"],
                        additional_properties=False,
                        properties={
                            "max_running": Schema(
                                one_of=[
                                    Schema(type=OpenAPIType.INTEGER, minimum=0),
                                    Schema(type=OpenAPIType.NULL),
                                ],
                                description="At most this many of the topic's jobs"
                                " processing at once across every worker; null: no limit;"
                                " 0 holds the topic like a pause.",
                            )
                        },
                    )
                )
            },
        )


@put(
    "/{topic:str}/limit",
    status_code=200,
    summary="Set or lift a topic's global concurrency limit",
    operation_class=_LimitOperation,
    responses={
        **_COMMON,
        **_BAD_PARAMS,
        400: _error("Body is not valid JSON, has unknown fields, or max_running is invalid."),
        415: _error("Content-Type is not application/json."),
    },
)
async def limit_topic(
    request: Request[Any, Any, Any], jobs: NamedDependency[Jobs], topic: FromPath[str]
) -> TopicOut:
    """Store the topic's `max_running` (enforced by every worker's claim; running jobs
    are never stopped, claims wait until fewer run)."""
    check_json(request)
    max_running = parse_limit(await request.body())
    await jobs.set_limit(topic, max_running=max_running)
    return _topic_out(await jobs.list_topics(), topic)


def topics_router(jobs: Jobs, authenticate: Authenticate) -> Router:
    """`/api/topics`, guarded by `authenticate` like `/api/jobs`, never cached."""

    def provide_jobs() -> Jobs:
        return jobs

    return Router(
        path="/api/topics",
        route_handlers=[list_topics, pause_topic, resume_topic, limit_topic],
        guards=[superuser_guard(authenticate), single_valued_query],
        dependencies={"jobs": Provide(provide_jobs, sync_to_thread=False)},
        cache_control=CacheControlHeader(no_store=True),
        tags=["topics"],
        security=[{"superuser": []}],
    )


def api_router(jobs: Jobs, authenticate: Authenticate, *, page_bytes: int = PAGE_BYTES) -> Router:
    """`/api/jobs`, guarded by `authenticate`, never cached; list pages hold `page_bytes`."""

    def provide_jobs() -> Jobs:
        return jobs

    def provide_page_bytes() -> int:
        return page_bytes

    return Router(
        path="/api/jobs",
        route_handlers=[enqueue, list_jobs, stats, get_job, requeue, cancel, delete_job],
        guards=[superuser_guard(authenticate), single_valued_query],
        dependencies={
            "jobs": Provide(provide_jobs, sync_to_thread=False),
            "page_bytes": Provide(provide_page_bytes, sync_to_thread=False),
        },
        cache_control=CacheControlHeader(no_store=True),
        tags=["jobs"],
        security=[{"superuser": []}],
    )
