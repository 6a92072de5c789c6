"""`GET /api/health`: whether this process can reach its job store, for load balancers
and orchestrators, without a token.

It answers `{"status": "ok"}` (200) when the store answers a cheap query within
`HEALTH_TIMEOUT`, else `{"status": "unavailable"}` (503); why is only in the server log.
The query looks up one primary key that no job has (an index probe, however big the
table). Requests that arrive while a probe runs share its answer, so unauthenticated
callers cannot put more than one query at a time on the store.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

import attrs
from litestar import Response, get
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.router import Router

from jobs_core import JobNotFound, Jobs

logger = logging.getLogger("jobs_http")

HEALTH_PATH = "/api/health"
#: Seconds the store has to answer before the check says `unavailable`.
HEALTH_TIMEOUT = 2.0
#: A well-formed job id that no job has (ids are UUIDv7; this is the nil UUID).
_NO_JOB = "00000000-0000-0000-0000-000000000000"


@attrs.frozen
class HealthOut:
    """The health check's whole answer: `ok` or `unavailable`, nothing else."""

    status: Literal["ok", "unavailable"]


class StoreProbe:
    """One cheap store query at a time; callers that come while it runs share its result."""

    def __init__(self, jobs: Jobs, timeout: float = HEALTH_TIMEOUT) -> None:
        self._jobs = jobs
        self._timeout = timeout
        self._running: asyncio.Task[bool] | None = None

    async def healthy(self) -> bool:
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._probe(), name="jobs-health")
        return await asyncio.shield(self._running)  # one caller leaving ends no probe

    async def _probe(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                await self._jobs.store.get(_NO_JOB)
        except JobNotFound:
            return True  # the store answered
        except TimeoutError:
            logger.warning("health check: the store did not answer in %gs", self._timeout)
            return False
        except Exception as exc:  # noqa: BLE001 - any failure means unhealthy, logged here only
            logger.warning("health check: the store is unavailable: %s", exc)
            return False
        return True


@get(
    "/",
    summary="Health check (no token)",
    security=[],
    responses={
        503: ResponseSpec(
            data_container=HealthOut,
            description='The store does not answer: `{"status": "unavailable"}`.',
            generate_examples=False,
        )
    },
)
async def health(probe: NamedDependency[StoreProbe]) -> Response[HealthOut]:
    """`{"status": "ok"}` when the job store answers, else 503 `{"status": "unavailable"}`.
    Needs no token and tells nothing else."""
    if await probe.healthy():
        return Response(HealthOut("ok"), status_code=200)
    return Response(HealthOut("unavailable"), status_code=503)


def health_router(jobs: Jobs) -> Router:
    """`/api/health`, public (no guard) and never cached."""
    probe = StoreProbe(jobs)

    def provide_probe() -> StoreProbe:
        return probe

    return Router(
        path=HEALTH_PATH,
        route_handlers=[health],
        dependencies={"probe": Provide(provide_probe, sync_to_thread=False)},
        cache_control=CacheControlHeader(no_store=True),
        tags=["health"],
    )
