"""Error hygiene: store failures become 503/500 in the one shape, with nothing leaked,
and the server log keeps the traceback (RELIABILITY §4.9 item 10)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from jobs_core import JobStatus, MemoryStore, StoreUnavailable
from jobs_http import create_app

from .conftest import AUTH, TOKEN, assert_error, make_jobs

SECRET_DSN = "postgresql://admin:hunter2@db.internal:5432/prod"
SQL = "SELECT id FROM jobs WHERE status = 'pending' FOR UPDATE SKIP LOCKED"


class BrokenStore(MemoryStore):
    """A store whose reads fail the way a driver would, with SQL and a DSN in the message."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def count_by_status(self) -> Mapping[JobStatus, int]:
        raise self.error

    async def get(self, job_id: str) -> Any:
        raise self.error


def _app_with(error: Exception) -> Any:
    jobs = make_jobs()
    jobs.store = BrokenStore(error)
    return create_app(jobs, token=TOKEN, run_worker=False)


async def test_unexpected_error_is_a_generic_500(caplog: pytest.LogCaptureFixture) -> None:
    app = _app_with(RuntimeError(f"{SQL} on {SECRET_DSN}"))
    async with AsyncTestClient(app=app) as c:
        for path in ("/api/jobs/stats", "/api/jobs/some-id"):
            response = await c.get(path, headers=AUTH)
            body = assert_error(response, 500)
            assert body["data"] == {}
            for leak in ("hunter2", "SELECT", "postgresql://", "RuntimeError", "Traceback"):
                assert leak not in response.text
    logged = [r for r in caplog.records if r.name == "jobs_http" and r.levelno >= logging.ERROR]
    assert logged
    assert logged[0].exc_info is not None  # the traceback stays server-side


async def test_store_unavailable_is_503() -> None:
    cause = StoreUnavailable(f"could not connect to {SECRET_DSN}")
    app = _app_with(cause)
    async with AsyncTestClient(app=app) as c:
        response = await c.get("/api/jobs/stats", headers=AUTH)
        assert_error(response, 503)
        assert "hunter2" not in response.text
        assert "retry" in response.json()["message"]
        assert response.headers["retry-after"] == "1"


async def test_no_token_or_payload_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Run a mix of API calls with DEBUG capture: the token never appears in any record,
    and payload contents never at INFO or above (RELIABILITY §4.9 item 9)."""
    caplog.set_level(logging.DEBUG)
    marker = "PAYLOAD-MARKER-7f3a"
    jobs = make_jobs()
    app = create_app(jobs, token=TOKEN, run_worker=False)
    async with AsyncTestClient(app=app) as c:
        ok = await c.post(
            "/api/jobs/enqueue", json={"topic": "ok", "payload": marker}, headers=AUTH
        )
        job_id = ok.json()["id"]
        await c.post("/api/jobs/enqueue", json={"topic": "", "payload": marker}, headers=AUTH)
        await c.post("/api/jobs/enqueue", content=marker.encode(), headers=AUTH)
        await c.get("/api/jobs", headers=AUTH)
        await c.get(f"/api/jobs/{job_id}", headers=AUTH)
        await c.get("/api/jobs", headers={"Authorization": f"Bearer {TOKEN}-wrong"})
        await c.get("/api/jobs", headers={"Authorization": TOKEN})
        await c.delete(f"/api/jobs/{job_id}", headers=AUTH)
        await jobs.run_once()
    for record in caplog.records:
        text = record.getMessage() + str(record.args or "") + str(record.exc_info or "")
        assert TOKEN not in text, record
        if record.levelno >= logging.INFO:
            assert marker not in text, record
