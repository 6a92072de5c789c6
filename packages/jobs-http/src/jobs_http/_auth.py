"""Superuser authentication: `Authorization: Bearer <token>` on every `/api/jobs` route.

A Litestar guard runs after routing but before the handler reads its parameters or
body, so an unauthenticated request learns nothing: not whether a job id exists
(401, never 404) and not the body limit (its body is never read). The token itself is
compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hmac
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

#: Checks a presented bearer token; may be sync or async.
Authenticate = Callable[[str], bool | Awaitable[bool]]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="jobs"'}
#: Longest Authorization header considered at all (tokens are short).
_MAX_HEADER = 4096


def token_checker(token: str) -> Authenticate:
    """An `Authenticate` accepting exactly `token`, compared with `hmac.compare_digest`."""
    if not isinstance(token, str) or not token.strip():
        raise ValueError("the superuser token must be a non-empty string")
    expected = token.encode("utf-8")

    def check(presented: str) -> bool:
        return hmac.compare_digest(presented.encode("utf-8"), expected)

    return check


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None if it is malformed."""
    if header is None or len(header) > _MAX_HEADER:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def superuser_guard(authenticate: Authenticate) -> Callable[..., Awaitable[None]]:
    """A Litestar guard that lets a request through only if `authenticate` accepts its token."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        token = bearer_token(connection.headers.get("authorization"))
        if token is None:
            raise NotAuthorizedException(
                "Missing or malformed Authorization header; send 'Bearer <superuser token>'.",
                headers=_CHALLENGE,
            )
        verdict = authenticate(token)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if verdict is not True:
            raise NotAuthorizedException("Invalid superuser token.", headers=_CHALLENGE)

    return guard


def any_of(*checks: Authenticate) -> Authenticate:
    """An `Authenticate` accepting a token that any of `checks` accepts (in order)."""

    async def check(presented: str) -> bool:
        for one in checks:
            verdict = one(presented)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if verdict is True:
                return True
        return False

    return check
