"""`GET /api/health`: public, `{"status": "ok"}` while the store answers, 503
`{"status": "unavailable"}` (and nothing more) when it does not."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from jobs_core import JobNotFound, Jobs, MemoryStore, StoreUnavailable
from jobs_http import create_app
from jobs_http._health import StoreProbe
from jobs_postgres import PostgresStore
from jobs_sqlite import SQLiteStore
from tests.pg_admin import throwaway_database

from .conftest import AUTH, TOKEN, Client, make_jobs
from .serve_process import free_port

SECRET = "postgresql://admin:hunter2@db.internal:5432/prod"


class BrokenStore(MemoryStore):
    """A store that fails every read, with a DSN in its message."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.gets = 0

    async def get(self, job_id: str) -> Any:
        self.gets += 1
        raise self.error


class GatedStore(MemoryStore):
    """A store whose reads wait for `gate`, counting them."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gets = 0

    async def get(self, job_id: str) -> Any:
        self.gets += 1
        await self.gate.wait()
        return await super().get(job_id)


def assert_health(response: Any, status: int, body: str) -> None:
    assert response.status_code == status
    assert response.json() == {"status": body}
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("application/json")


async def test_ok_without_a_token(anon: Client) -> None:
    assert_health(await anon.get("/api/health"), 200, "ok")


async def test_a_token_changes_nothing(client: Client) -> None:
    assert_health(await client.get("/api/health"), 200, "ok")


async def test_unavailable_store_is_a_bare_503(caplog: pytest.LogCaptureFixture) -> None:
    jobs = make_jobs()
    jobs.store = BrokenStore(StoreUnavailable(f"could not connect to {SECRET}"))
    async with AsyncTestClient(app=create_app(jobs, token=TOKEN, run_worker=False)) as c:
        response = await c.get("/api/health")
    assert_health(response, 503, "unavailable")
    assert "hunter2" not in response.text
    logged = [r.getMessage() for r in caplog.records if r.name == "jobs_http"]
    assert any("health check" in line and "could not connect" in line for line in logged)


async def test_any_store_error_is_503_too() -> None:
    jobs = make_jobs()
    jobs.store = BrokenStore(RuntimeError("driver exploded"))
    async with AsyncTestClient(app=create_app(jobs, token=TOKEN, run_worker=False)) as c:
        assert_health(await c.get("/api/health"), 503, "unavailable")
        assert_health(await c.get("/api/health", headers=AUTH), 503, "unavailable")


async def test_a_store_that_does_not_answer_in_time_is_unavailable() -> None:
    store = GatedStore()
    probe = StoreProbe(Jobs(store), timeout=0.01)
    assert await probe.healthy() is False
    store.gate.set()
    assert await probe.healthy() is True


async def test_concurrent_checks_share_one_probe() -> None:
    store = GatedStore()
    probe = StoreProbe(Jobs(store))
    checks = [asyncio.create_task(probe.healthy()) for _ in range(20)]
    for _ in range(10):
        await asyncio.sleep(0)
    assert store.gets == 1
    store.gate.set()
    assert await asyncio.gather(*checks) == [True] * 20
    assert await probe.healthy() is True
    assert store.gets == 2


async def test_the_probe_reads_no_real_job() -> None:
    """The probe asks for an id no job has: a found job would mean it read one."""
    with pytest.raises(JobNotFound):
        await MemoryStore().get("00000000-0000-0000-0000-000000000000")


async def test_sqlite_file(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "jobs.db")
    try:
        async with AsyncTestClient(app=create_app(Jobs(store), token=TOKEN)) as c:
            assert_health(await c.get("/api/health"), 200, "ok")
    finally:
        await store.close()


async def test_postgres_up_and_down() -> None:
    with throwaway_database("jobs_health") as url:
        store = PostgresStore(url)
        try:
            async with AsyncTestClient(app=create_app(Jobs(store), token=TOKEN)) as c:
                assert_health(await c.get("/api/health"), 200, "ok")
        finally:
            await store.close()
    nobody = PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    try:
        app = create_app(Jobs(nobody), token=TOKEN, run_worker=False)
        async with AsyncTestClient(app=app) as c:
            assert_health(await c.get("/api/health"), 503, "unavailable")
    finally:
        await nobody.close()
