"""A stored row no job can be read from (probe D1): a 500 naming the job, never the
store's file, and DELETE still removes it."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from jobs_core import Jobs
from jobs_http import create_app
from jobs_sqlite import SQLiteStore
from tests.http.conftest import AUTH, TOKEN, Client, assert_error


@pytest.fixture
async def sqlite_client(tmp_path: Path) -> AsyncIterator[tuple[Client, Jobs, Path]]:
    path = tmp_path / "jobs.db"
    jobs = Jobs(SQLiteStore(path))
    app = create_app(jobs, token=TOKEN, run_worker=False)
    async with AsyncTestClient(app=app) as client:
        client.headers.update(AUTH)
        yield client, jobs, path
    await jobs.aclose()


async def test_an_unreadable_job_is_a_500_naming_it_and_can_be_deleted(
    sqlite_client: tuple[Client, Jobs, Path],
) -> None:
    client, jobs, path = sqlite_client
    job = await jobs.enqueue("t", None)
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE jobs SET run_at = 'garbage' WHERE id = ?", (job.id,))
    for response in (await client.get(f"/api/jobs/{job.id}"), await client.get("/api/jobs")):
        body = assert_error(response, 500)
        assert body["message"].startswith(f"Stored job '{job.id}' cannot be read: corrupt row")
        assert "run_at" in body["message"]
        assert str(path) not in body["message"]
    assert (await client.delete(f"/api/jobs/{job.id}")).status_code == 204
    assert_error(await client.get(f"/api/jobs/{job.id}"), 404)
