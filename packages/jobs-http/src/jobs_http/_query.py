"""Query parameters are single-valued: `?limit=5&limit=6` is a 400, not "the last wins".

A repeated parameter usually means a client bug (two filters meant, one applied), and
the API is strict everywhere else, so it is refused for every parameter of every route.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import ValidationException
from litestar.handlers.base import BaseRouteHandler

#: Most repeated parameter names one error lists.
_MAX_NAMED = 20


async def single_valued_query(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """A Litestar guard refusing any query parameter given more than once."""
    params = connection.query_params
    repeated = [name for name in params if len(params.getall(name)) > 1][:_MAX_NAMED]
    if repeated:
        raise ValidationException(
            "Invalid request parameters.",
            extra=[{"key": name[:64], "message": "given more than once"} for name in repeated],
        )
