"""`create_app`: the Litestar application over one `Jobs`, with its worker in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Response, get
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.response import Redirect
from litestar.router import Router

from jobs_core import Jobs
from jobs_http._api import PAGE_BYTES, api_router, topics_router
from jobs_http._asgi import JobsApp
from jobs_http._auth import Authenticate, any_of, token_checker
from jobs_http._bulk import bulk_router
from jobs_http._exceptions import EXCEPTION_HANDLERS, error_response
from jobs_http._health import HEALTH_PATH, health_router
from jobs_http._metrics import JobsMetrics, metrics_router
from jobs_http._schedules import schedules_router
from jobs_http._ui import ui_routes

logger = logging.getLogger("jobs_http")

#: Envelope allowed around the payload in a request body (topic, options, JSON syntax).
BODY_ENVELOPE = 64 * 1024
#: Where the OpenAPI schema is served (public, like the admin UI under `/_/`).
OPENAPI_PATH = "/schema"
#: Paths served without credentials; every other route needs the superuser token.
PUBLIC_PREFIXES = ("/_/", OPENAPI_PATH + "/")
#: Single public paths: the redirect, the UI and schema roots, the health check.
PUBLIC_PATHS = frozenset({"/", "/_", OPENAPI_PATH, HEALTH_PATH})


@get("/", include_in_schema=False)
async def _root() -> Redirect:
    return Redirect(path="/_/")


async def _schema_not_found_as_json(response: Response[Any]) -> Response[Any]:
    """Litestar answers unknown `/schema/...` paths (`/schema/swagger`...) with an HTML page;
    give them the one JSON error shape instead."""
    if response.status_code == 404:
        return error_response(404, "Not Found")
    return response


def create_app(
    jobs: Jobs,
    *,
    token: str | None = None,
    authenticate: Authenticate | None = None,
    run_worker: bool = True,
    ui: bool = True,
    debug: bool = False,
    page_bytes: int = PAGE_BYTES,
    metrics: JobsMetrics | None = None,
    metrics_token: str | None = None,
) -> Litestar:
    """The Jobs service: the superuser API, the admin UI and (unless `run_worker=False`) the worker.

    Give exactly one of `token` (the superuser bearer token) or `authenticate` (your own
    check of a presented bearer token, sync or async, returning True to allow). The app's
    lifespan starts `jobs`' worker and stops it gracefully (`JobsConfig.shutdown_grace`);
    closing the store stays with whoever built it. `ui=False` leaves out the admin page;
    `page_bytes` bounds the payload bytes of one `GET /api/jobs` page. With `metrics`
    (the `JobsMetrics` observer given to `jobs`), `GET /metrics` serves them to the
    superuser token or to `metrics_token` (a scraper's own, read-only credential).
    """
    if (token is None) == (authenticate is None):
        raise TypeError("create_app() needs exactly one of token= or authenticate=")
    check = token_checker(token) if token is not None else authenticate
    assert check is not None
    if metrics_token is not None and metrics is None:
        raise TypeError("create_app(metrics_token=) needs metrics=")
    scrape = check if metrics_token is None else any_of(check, token_checker(metrics_token))

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        if run_worker:
            await jobs.start()
            logger.info("worker started for topics: %s", ", ".join(sorted(jobs.topics)) or "none")
        try:
            yield
        finally:
            if run_worker and jobs.running:
                await jobs.stop()
                logger.info("worker stopped")

    max_body = jobs.config.max_payload_size + BODY_ENVELOPE
    app = JobsApp(
        route_handlers=[
            api_router(jobs, check, page_bytes=page_bytes),
            topics_router(jobs, check),
            bulk_router(jobs, check),
            *([metrics_router(jobs, metrics, scrape)] if metrics is not None else []),
            schedules_router(jobs, check),
            health_router(jobs),
            _root,
            *(ui_routes() if ui else []),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        request_max_body_size=max_body,
        openapi_config=OpenAPIConfig(
            title="Jobs",
            version="0.1.0",
            description=(
                "Superuser API of Jobs, a persistent background job queue. Every"
                " /api/jobs route needs `Authorization: Bearer <superuser token>`. Errors are"
                ' always {"status", "message", "data"}.'
            ),
            path=OPENAPI_PATH,
            openapi_router=Router(
                OPENAPI_PATH,
                route_handlers=[],
                include_in_schema=False,
                after_request=_schema_not_found_as_json,
            ),
            render_plugins=[JsonRenderPlugin(path=["/", "/openapi.json"])],  # no CDN-hosted viewer
            components=Components(
                security_schemes={
                    "superuser": SecurityScheme(
                        type="http", scheme="bearer", description="The superuser token."
                    )
                }
            ),
        ),
        debug=debug,
        # Logging is the embedding application's (or `jobs serve`'s) to configure.
        logging_config=None,
    )
    app.state.jobs = jobs
    return app


def public_paths(app: Litestar) -> list[str]:
    """Route paths that need no credentials (the UI, the schema, the `/` redirect, the
    health check)."""
    return [route.path for route in app.routes if is_public(route.path)]


def is_public(path: str) -> bool:
    """Whether `path` is on the explicit public allow-list."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
