"""`/api/schedules`: stored schedules, thin over `Jobs.schedule` and friends.

The wire view of a schedule carries what an operator's page shows: its timing, the
next fire time and the last slot fired with its job. `PUT` takes the definition as JSON
(`every` in seconds) and leaves every check to the core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import attrs
from litestar import Request, delete, get, post, put
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import FromPath
from litestar.router import Router

from jobs_core import Jobs, Schedule
from jobs_core import Misfire as MisfireValue
from jobs_http._auth import Authenticate, superuser_guard
from jobs_http._query import single_valued_query
from jobs_http._wire import ErrorOut, InvalidBody, load_object

#: The fields a `PUT` body may have (all but `topic` optional).
SCHEDULE_FIELDS: Final = (
    "topic",
    "payload",
    "cron",
    "every",
    "timezone",
    "misfire",
    "priority",
    "max_retries",
)


@attrs.frozen(kw_only=True)
class ScheduleOut:
    """One stored schedule: its definition (`cron` in `timezone`, or `every` seconds),
    whether it is paused, its next fire time, and the last slot fired with its job
    (null before the first firing). Times are RFC 3339 UTC."""

    name: str
    topic: str
    payload: Any
    cron: str | None
    every: float | None
    timezone: str
    misfire: str
    priority: int
    max_retries: int | None
    timing: str
    paused: bool
    next_fire_at: datetime
    last_fired_at: datetime | None
    last_job_id: str | None
    created: datetime
    updated: datetime

    @classmethod
    def from_schedule(cls, schedule: Schedule) -> ScheduleOut:
        """The wire view of a core `Schedule`."""
        return cls(
            name=schedule.name,
            topic=schedule.topic,
            payload=schedule.payload,
            cron=schedule.cron,
            every=None if schedule.every is None else schedule.every.total_seconds(),
            timezone=schedule.timezone,
            misfire=schedule.misfire,
            priority=schedule.priority,
            max_retries=schedule.max_retries,
            timing=schedule.timing,
            paused=schedule.paused,
            next_fire_at=schedule.next_fire_at,
            last_fired_at=schedule.last_fired_at,
            last_job_id=schedule.last_job_id,
            created=schedule.created,
            updated=schedule.updated,
        )


@attrs.frozen(kw_only=True)
class SchedulesOut:
    """Every stored schedule, by name."""

    items: list[ScheduleOut]


def parse_schedule(raw: bytes) -> dict[str, Any]:
    """A `PUT` body as `Jobs.schedule` keywords (`every` seconds as a `timedelta`), or
    `InvalidBody` for what only the wire can get wrong; the core checks the rest."""
    body = load_object(raw, SCHEDULE_FIELDS)
    if "topic" not in body:
        raise InvalidBody("invalid body: topic: is required", {"topic": "is required"})
    every = body.get("every")
    if every is not None:
        if (
            isinstance(every, bool)
            or not isinstance(every, int | float)
            or not math.isfinite(every)
            or every <= 0
        ):
            problem = "must be a positive number of seconds"
            raise InvalidBody(f"invalid body: every: {problem}", {"every": problem})
        body["every"] = timedelta(seconds=every)
    return body


_COMMON = {
    401: ResponseSpec(data_container=ErrorOut, description="Missing or wrong superuser token."),
    500: ResponseSpec(data_container=ErrorOut, description="Unexpected server error."),
    503: ResponseSpec(data_container=ErrorOut, description="The job store is unreachable."),
}
_NOT_FOUND = {404: ResponseSpec(data_container=ErrorOut, description="No schedule has this name.")}
_BAD = {400: ResponseSpec(data_container=ErrorOut, description="Invalid name or definition.")}


@dataclass
class _PutOperation(Operation):
    """Documents the `PUT` body, which the handler reads and validates itself."""

    def __post_init__(self) -> None:
        nullable_int = [Schema(type=OpenAPIType.INTEGER), Schema(type=OpenAPIType.NULL)]
        self.request_body = RequestBody(
            required=True,
            description="The schedule's definition; exactly one of cron and every.",
            content={
                "application/json": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        required=["topic"],
                        additional_properties=False,
                        properties={
                            "topic": Schema(type=OpenAPIType.STRING),
                            "payload": Schema(description="Any JSON value; default null."),
                            "cron": Schema(
                                type=[OpenAPIType.STRING, OpenAPIType.NULL],
                                description="A cron expression, judged in timezone.",
                            ),
                            "every": Schema(
                                type=[OpenAPIType.NUMBER, OpenAPIType.NULL],
                                description="A period in seconds, counted from the Unix epoch.",
                            ),
                            "timezone": Schema(
                                type=OpenAPIType.STRING, description="IANA zone; default UTC."
                            ),
                            "misfire": Schema(
                                type=OpenAPIType.STRING,
                                enum=["latest", "all", "skip"],
                                description="What missed slots do; default latest.",
                            ),
                            "priority": Schema(type=OpenAPIType.INTEGER),
                            "max_retries": Schema(one_of=nullable_int),
                        },
                    )
                )
            },
        )


@get("/", summary="List schedules", responses=_COMMON)
async def list_schedules(jobs: NamedDependency[Jobs]) -> SchedulesOut:
    """Every stored schedule, by name, with its next fire time and last fired job."""
    return SchedulesOut(items=[ScheduleOut.from_schedule(s) for s in await jobs.schedules()])


@get("/{name:str}", summary="Get a schedule", responses={**_COMMON, **_BAD, **_NOT_FOUND})
async def get_schedule(jobs: NamedDependency[Jobs], name: FromPath[str]) -> ScheduleOut:
    """One stored schedule."""
    return ScheduleOut.from_schedule(await jobs.get_schedule(name))


@put(
    "/{name:str}",
    status_code=200,
    summary="Create or update a schedule",
    operation_class=_PutOperation,
    responses={
        **_COMMON,
        **_BAD,
        415: ResponseSpec(data_container=ErrorOut, description="Content-Type is not JSON."),
    },
)
async def put_schedule(
    request: Request[Any, Any, Any], jobs: NamedDependency[Jobs], name: FromPath[str]
) -> ScheduleOut:
    """Store the definition: an update keeps the pause and, when the timing is
    unchanged, the next fire time."""
    media_type, _ = request.content_type
    if media_type.lower() != "application/json":
        raise HTTPException(status_code=415, detail="Content-Type must be application/json.")
    body = parse_schedule(await request.body())
    misfire: MisfireValue = body.pop("misfire", "latest")
    return ScheduleOut.from_schedule(await jobs.schedule(name, misfire=misfire, **body))


@delete(
    "/{name:str}",
    status_code=204,
    summary="Delete a schedule",
    responses={**_COMMON, **_BAD, **_NOT_FOUND},
)
async def delete_schedule(jobs: NamedDependency[Jobs], name: FromPath[str]) -> None:
    """Delete the schedule; the jobs it made stay."""
    await jobs.unschedule(name)


@post(
    "/{name:str}/pause",
    status_code=200,
    summary="Pause a schedule",
    responses={**_COMMON, **_BAD, **_NOT_FOUND},
)
async def pause_schedule(jobs: NamedDependency[Jobs], name: FromPath[str]) -> ScheduleOut:
    """Stop firing the schedule, in every process."""
    return ScheduleOut.from_schedule(await jobs.pause_schedule(name))


@post(
    "/{name:str}/resume",
    status_code=200,
    summary="Resume a schedule",
    responses={**_COMMON, **_BAD, **_NOT_FOUND},
)
async def resume_schedule(jobs: NamedDependency[Jobs], name: FromPath[str]) -> ScheduleOut:
    """Fire the schedule again from its next slot after now."""
    return ScheduleOut.from_schedule(await jobs.resume_schedule(name))


def schedules_router(jobs: Jobs, authenticate: Authenticate) -> Router:
    """`/api/schedules`, guarded by `authenticate` like `/api/jobs`, never cached."""

    def provide_jobs() -> Jobs:
        return jobs

    return Router(
        path="/api/schedules",
        route_handlers=[
            list_schedules,
            get_schedule,
            put_schedule,
            delete_schedule,
            pause_schedule,
            resume_schedule,
        ],
        guards=[superuser_guard(authenticate), single_valued_query],
        dependencies={"jobs": Provide(provide_jobs, sync_to_thread=False)},
        cache_control=CacheControlHeader(no_store=True),
        tags=["schedules"],
        security=[{"superuser": []}],
    )
