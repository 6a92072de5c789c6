"""Every error becomes one JSON shape, `{"status", "message", "data"}`: this module decides how.

Domain errors map to status codes by class (the table below); Litestar's own errors
(validation, 401, 404, 405, 413...) keep their status and get the same shape. Anything
else is a bug or an outage: it is logged here with its traceback and answered with a
generic 500 that leaks nothing (no traceback, no SQL, no DSN).
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

from jobs_core import (
    CronUnavailable,
    IllegalTransition,
    InvalidInput,
    InvalidPayload,
    InvalidTopic,
    JobBusy,
    JobNotFound,
    JobsError,
    PayloadTooLarge,
    ScheduleNotFound,
    StoreUnavailable,
    UniqueKeyTaken,
    UnreadableJob,
)
from jobs_http._wire import InvalidBody

logger = logging.getLogger("jobs_http")

#: Domain error class -> HTTP status; the first matching class (in order) wins.
STATUS_OF: tuple[tuple[type[JobsError], int], ...] = (
    (PayloadTooLarge, 413),
    (InvalidInput, 400),
    (JobNotFound, 404),
    (UniqueKeyTaken, 409),  # a requeue over a held unique key (an IllegalTransition too)
    (ScheduleNotFound, 404),
    # The server lacks the cron parser: the request cannot be served as asked (its
    # message says to install `jobs-core[cron]`; every= schedules still work).
    (CronUnavailable, 400),
    (IllegalTransition, 409),
    (JobBusy, 409),
    (StoreUnavailable, 503),
    (UnreadableJob, 500),
)

#: The request field a core validation error is about.
_FIELD_OF: tuple[tuple[type[JobsError], str], ...] = (
    (InvalidTopic, "topic"),
    (InvalidPayload, "payload"),
)

#: Every API error is marked uncacheable, like every API success.
_NO_STORE = {"Cache-Control": "no-store"}
#: Seconds a client should wait before retrying after a 503 (the store comes back, or a
#: dropped connection is replaced, within about that).
RETRY_AFTER_SECONDS = 1


def error_response(
    status: int,
    message: str,
    data: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    """The one error shape, with `Cache-Control: no-store`."""
    return Response(
        {"status": status, "message": message, "data": data or {}},
        status_code=status,
        headers={**_NO_STORE, **(headers or {})},
        media_type="application/json",
    )


def _domain_error(request: Request[Any, Any, Any], exc: JobsError) -> Response[dict[str, Any]]:
    for cls, status in STATUS_OF:
        if isinstance(exc, cls):
            if status == 503:
                logger.warning(
                    "store unavailable on %s %s: %s", request.method, request.url.path, exc
                )
                return error_response(
                    503,
                    "The job store is unavailable; retry later.",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
            if isinstance(exc, UnreadableJob):  # corrupt data: name the job, not the store
                logger.error("%s (on %s %s)", exc, request.method, request.url.path)
                return error_response(status, exc.summary[:1].upper() + exc.summary[1:])
            return error_response(status, str(exc), _field_data(exc))
    return _unexpected(request, exc)


def _field_data(exc: JobsError) -> dict[str, Any]:
    """`data` of a 400/413: which request field was wrong, when the error says; of a 409
    over a unique key, the key and the job holding it."""
    if isinstance(exc, InvalidBody):
        return dict(exc.data)
    if isinstance(exc, UniqueKeyTaken):  # which job holds the key, for the caller to show
        held = {"unique_key": exc.unique_key}
        return held if exc.holder_id is None else {**held, "holder_id": exc.holder_id}
    for cls, field in _FIELD_OF:
        if isinstance(exc, cls):
            return {field: str(exc)}
    return {}


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    if status >= 500:
        return _unexpected(request, exc)
    data: dict[str, Any] = {}
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        for problem in exc.extra:
            if isinstance(problem, dict) and "key" in problem:
                data[str(problem["key"])] = str(problem.get("message", "invalid value"))
    headers = {
        k: v for k, v in (exc.headers or {}).items() if k.lower() in {"allow", "www-authenticate"}
    }
    return error_response(status, _message(exc), data, headers)


def _message(exc: HTTPException) -> str:
    if isinstance(exc, ValidationException) and exc.extra:
        return "Invalid request parameters."
    if exc.status_code == 413:
        return "Request body too large."
    return str(exc.detail)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(
        HTTP_500_INTERNAL_SERVER_ERROR, "Something went wrong while processing your request."
    )


#: For `Litestar(exception_handlers=...)`.
EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    JobsError: _domain_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
