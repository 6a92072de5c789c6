"""`POST /api/jobs/bulk/{requeue,delete,cancel}`: one request for many jobs.

The body names the jobs (`ids`) or a filter (`topic`, `status`, `before`), with `max`
(default 10,000) and `dry_run` (count only: what a confirmation dialog shows); the
answer is `{matched, changed, skipped}`. Each job goes through `jobs_core.Jobs`' own
bulk call, so through the same guarded transition as one job at a time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import attrs
from litestar import Request, post
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.router import Router

from jobs_core import BULK_MAX, BULK_MAX_LIMIT, BulkResult, Jobs, JobStatus
from jobs_http._api import check_json
from jobs_http._auth import Authenticate, superuser_guard
from jobs_http._query import single_valued_query
from jobs_http._wire import ErrorOut, InvalidBody, load_object, parse_rfc3339

#: The body's fields; anything else is refused.
FIELDS: Final = ("ids", "topic", "status", "before", "max", "dry_run")


@attrs.frozen
class BulkOut:
    """What a bulk action did: jobs selected, changed, and skipped because the action
    was not legal for them (or they changed or vanished meanwhile)."""

    matched: int
    changed: int
    skipped: int

    @classmethod
    def from_result(cls, result: BulkResult) -> BulkOut:
        return cls(matched=result.matched, changed=result.changed, skipped=result.skipped)


def parse_bulk(raw: bytes) -> tuple[dict[str, Any], bool]:
    """The keyword arguments of a `Jobs.bulk_*` call and `dry_run`, or `InvalidBody`;
    the rules of a selection (ids or a filter, the bounds of `max`) are the core's."""
    body = load_object(raw, FIELDS)
    options: dict[str, Any] = {}
    if body.get("ids") is not None:
        ids = body["ids"]
        if not isinstance(ids, list) or not all(isinstance(job_id, str) for job_id in ids):
            raise _invalid("ids", "must be an array of job ids")
        options["ids"] = ids
    for name in ("topic", "status"):
        if body.get(name) is not None:
            if not isinstance(body[name], str):
                raise _invalid(name, "must be a string")
            options[name] = body[name]
    if body.get("before") is not None:
        try:
            options["before"] = parse_rfc3339(body["before"])
        except (TypeError, ValueError) as exc:
            raise _invalid("before", str(exc)) from None
    if body.get("max") is not None:
        value = body["max"]
        if isinstance(value, bool) or not isinstance(value, int):
            raise _invalid("max", "must be an integer")
        options["max_jobs"] = value
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise _invalid("dry_run", "must be true or false")
    return options, dry_run


def _invalid(name: str, problem: str) -> InvalidBody:
    return InvalidBody(f"invalid body: {name}: {problem}", {name: problem})


_SELECTION_SCHEMA: Final = Schema(
    type=OpenAPIType.OBJECT,
    additional_properties=False,
    description="The jobs: `ids`, or a filter of one or more of topic, status, before.",
    properties={
        "ids": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.STRING)),
        "topic": Schema(type=OpenAPIType.STRING),
        "status": Schema(type=OpenAPIType.STRING, enum=[status.value for status in JobStatus]),
        "before": Schema(
            type=OpenAPIType.STRING,
            format="date-time",  # type: ignore[arg-type]
            description="Jobs last changed before this RFC 3339 time.",
        ),
        "max": Schema(
            type=OpenAPIType.INTEGER,
            minimum=1,
            maximum=BULK_MAX_LIMIT,
            description=f"Most jobs selected, newest first (default {BULK_MAX}).",
        ),
        "dry_run": Schema(
            type=OpenAPIType.BOOLEAN, description="Only count the selection (default false)."
        ),
    },
)


@dataclass
class _BulkOperation(Operation):
    """Documents the selection body, which the handler reads and validates itself."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description="Which jobs. Fields not listed here are refused.",
            content={"application/json": OpenAPIMediaType(schema=_SELECTION_SCHEMA)},
        )


def _error(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorOut, description=description, generate_examples=False)


_RESPONSES: Final = {
    400: _error("Body is not valid JSON, has unknown fields, or the selection is invalid."),
    401: _error("Missing, malformed or wrong superuser token."),
    415: _error("Content-Type is not application/json."),
    500: _error("Unexpected server error (details are only in the server log)."),
    503: _error("The job store is unreachable; retry later."),
}

_Action = Callable[..., Awaitable[BulkResult]]


async def _run(request: Request[Any, Any, Any], action: _Action) -> BulkOut:
    check_json(request)
    options, dry_run = parse_bulk(await request.body())
    return BulkOut.from_result(await action(**options, dry_run=dry_run))


@post(
    "/requeue",
    status_code=200,
    summary="Requeue many jobs",
    operation_class=_BulkOperation,
    responses=_RESPONSES,
)
async def bulk_requeue(request: Request[Any, Any, Any], jobs: NamedDependency[Jobs]) -> BulkOut:
    """Requeue each selected job that may be requeued (`failed`, `cancelled`); the
    others are skipped."""
    return await _run(request, jobs.bulk_requeue)


@post(
    "/delete",
    status_code=200,
    summary="Delete many jobs",
    operation_class=_BulkOperation,
    responses=_RESPONSES,
)
async def bulk_delete(request: Request[Any, Any, Any], jobs: NamedDependency[Jobs]) -> BulkOut:
    """Delete each selected job that may be deleted (`pending`, `failed`, `cancelled`);
    the others are skipped."""
    return await _run(request, jobs.bulk_delete)


@post(
    "/cancel",
    status_code=200,
    summary="Cancel many jobs",
    operation_class=_BulkOperation,
    responses=_RESPONSES,
)
async def bulk_cancel(request: Request[Any, Any, Any], jobs: NamedDependency[Jobs]) -> BulkOut:
    """Cancel each selected job that may be cancelled (`pending` at once, `processing`
    by a cancel request); final ones are skipped."""
    return await _run(request, jobs.bulk_cancel)


def bulk_router(jobs: Jobs, authenticate: Authenticate) -> Router:
    """`/api/jobs/bulk`, guarded by `authenticate` like `/api/jobs`, never cached."""

    def provide_jobs() -> Jobs:
        return jobs

    return Router(
        path="/api/jobs/bulk",
        route_handlers=[bulk_requeue, bulk_delete, bulk_cancel],
        guards=[superuser_guard(authenticate), single_valued_query],
        dependencies={"jobs": Provide(provide_jobs, sync_to_thread=False)},
        cache_control=CacheControlHeader(no_store=True),
        tags=["jobs"],
        security=[{"superuser": []}],
    )
