"""What every HTTP response of the app gets, whatever route or error produced it.

- `HEAD` is answered like `GET` without the body (same status and headers, including
  `Content-Length`), so health checkers and caches that use `HEAD` work on every `GET`
  route. Litestar itself answers 405 to `HEAD` unless a route declares it.
- `X-Content-Type-Options: nosniff`: a browser never guesses a type other than the
  declared one (a JSON error, a payload, an asset).

Both are done around the whole Litestar app rather than per route, so no route, error
handler or Litestar-internal response can miss them.
"""

from __future__ import annotations

from typing import Any, cast

from litestar import Litestar
from litestar.types import HTTPScope, Message, Send

_NOSNIFF = (b"x-content-type-options", b"nosniff")


class JobsApp(Litestar):
    """Litestar, with `HEAD` served as `GET` and `nosniff` on every response."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        is_head = scope["method"] == "HEAD"
        if is_head:
            scope = cast(HTTPScope, {**scope, "method": "GET"})
        await super().__call__(scope, receive, _edge_send(send, drop_body=is_head))


def _edge_send(send: Send, *, drop_body: bool) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if all(name.lower() != _NOSNIFF[0] for name, _ in headers):
                headers.append(_NOSNIFF)
            message = {**message, "headers": headers}
        elif drop_body and message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return wrapped
