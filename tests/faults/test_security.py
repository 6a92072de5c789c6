"""The parts of the auth/UI checklist (RELIABILITY §4.9) that tests/http does not already
cover as plain HTTP assertions: UI security headers and CORS. (Route census, constant-time
comparison, secrets in logs, 5xx hygiene, body limits, defaults and the token file are in
tests/http; XSS and the polling bound in tests/http/browser; 5xx hygiene with a real
database outage in tests/faults/test_pg_faults.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from jobs_core import Jobs, MemoryStore
from jobs_http import create_app

TOKEN = "fault-tests-superuser-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EVIL = "https://evil.example"


@pytest.fixture
async def client() -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    app = create_app(Jobs(MemoryStore()), token=TOKEN, run_worker=False)
    async with AsyncTestClient(app=app) as c:
        yield c


def _directives(header: str) -> dict[str, str]:
    parts = (p.strip().split(None, 1) for p in header.split(";") if p.strip())
    return {p[0]: p[1] if len(p) > 1 else "" for p in parts}


@pytest.mark.parametrize("path", ["/_/", "/_/static/app.js", "/_/static/style.css"])
async def test_ui_security_headers(client: AsyncTestClient, path: str) -> None:  # type: ignore[type-arg]
    response = await client.get(path)
    assert response.status_code == 200
    csp = _directives(response.headers["content-security-policy"])
    assert csp["default-src"] == "'self'"
    assert csp["script-src"] == "'self'"
    assert csp["object-src"] == "'none'"
    assert csp["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_no_cross_origin_access(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    """A foreign origin gets no CORS grant: not on a preflight, not on an authorized GET."""
    preflight = await client.options(
        "/api/jobs",
        headers={"Origin": EVIL, "Access-Control-Request-Method": "DELETE"},
    )
    assert preflight.status_code >= 400
    assert "access-control-allow-origin" not in preflight.headers
    response = await client.get("/api/jobs", headers={**AUTH, "Origin": EVIL})
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers
