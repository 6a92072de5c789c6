"""Body size limits (RELIABILITY §4.8, §4.9 item 11): a too-large body is refused with 413
after reading at most the limit, whether it announces its length or is chunked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

from litestar import Litestar

from jobs_core import JobsConfig
from jobs_http import BODY_ENVELOPE

from .conftest import AUTH, Client, assert_error

CHUNK = 64 * 1024
FIFTY_MB = 50 * 1024 * 1024


async def _call(
    app: Litestar, chunks: Iterator[bytes], headers: dict[str, str]
) -> tuple[int, dict[str, Any], int]:
    """Drive the ASGI app directly; returns status, JSON body and body bytes it consumed."""
    consumed = 0
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal consumed
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        consumed += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/jobs/enqueue",
        "raw_path": b"/api/jobs/enqueue",
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
        "state": {},
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return start["status"], json.loads(body), consumed


def _fifty_mb() -> Iterator[bytes]:
    yield b'{"topic": "ok", "payload": "'
    for _ in range(FIFTY_MB // CHUNK):
        yield b"x" * CHUNK


async def test_fifty_mb_with_content_length_is_refused_unread(app: Litestar) -> None:
    headers = {**AUTH, "Content-Type": "application/json", "Content-Length": str(FIFTY_MB)}
    status, body, consumed = await _call(app, _fifty_mb(), headers)
    assert status == 413
    assert body["status"] == 413
    assert consumed == 0


async def test_fifty_mb_chunked_is_refused_after_the_limit(app: Litestar) -> None:
    """No Content-Length (chunked): reading stops once the limit is passed."""
    headers = {**AUTH, "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    status, body, consumed = await _call(app, _fifty_mb(), headers)
    assert status == 413
    assert set(body) == {"status", "message", "data"}
    limit = JobsConfig().max_payload_size + BODY_ENVELOPE
    assert consumed <= limit + CHUNK


async def test_two_mib_body_is_413(client: Client) -> None:
    body = b'{"topic": "ok", "payload": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = await client.post(
        "/api/jobs/enqueue", content=body, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413)
    assert (await client.get("/api/jobs/stats")).json()["total"] == 0


def test_litestar_has_the_body_limit_fix() -> None:
    """CVE-2024-52581 (unbounded multipart/body reads) is fixed in Litestar 2.13.0."""
    major, minor, *_ = (int(part) for part in version("litestar").split(".")[:2])
    assert (major, minor) >= (2, 13)


def test_app_sets_request_max_body_size(app: Litestar) -> None:
    assert app.request_max_body_size == JobsConfig().max_payload_size + BODY_ENVELOPE
