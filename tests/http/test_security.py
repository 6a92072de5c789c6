"""Security checklist items of RELIABILITY §4.9 that concern the API (CORS, races)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from jobs_core import Jobs, JobStore, MemoryStore, open_store
from jobs_http import create_app

from .conftest import AUTH, TOKEN, Client


async def test_no_cors_for_foreign_origins(anon: Client) -> None:
    """No Access-Control-Allow-Origin at all: browsers on other origins cannot read the API."""
    preflight = await anon.options(
        "/api/jobs",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "DELETE",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-credentials" not in preflight.headers
    response = await anon.get("/api/jobs", headers={"Origin": "https://evil.example", **AUTH})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    store = (
        MemoryStore()
        if request.param == "memory"
        else open_store(f"sqlite:///{tmp_path / 'race.db'}")
    )
    yield store
    await store.close()


async def test_delete_racing_a_claim(store: JobStore) -> None:
    """DELETE of a job being claimed: exactly one wins; a deleted job is never claimed."""
    jobs = Jobs(store)
    app = create_app(jobs, token=TOKEN, run_worker=False)
    async with AsyncTestClient(app=app) as client:
        client.headers.update(AUTH)
        for _ in range(15):
            job = (await client.post("/api/jobs/enqueue", json={"topic": "race"})).json()
            claim = store.claim(
                topics={"race"}, now=jobs.clock.now(), lease=timedelta(minutes=1), limit=1
            )
            response, claimed = await asyncio.gather(client.delete(f"/api/jobs/{job['id']}"), claim)
            assert response.status_code in {204, 409}, response.text
            was_claimed = [c.id for c in claimed] == [job["id"]]
            assert (response.status_code == 204) != was_claimed
            after = await client.get(f"/api/jobs/{job['id']}")
            assert after.status_code == (404 if response.status_code == 204 else 200)
            if was_claimed:
                assert after.json()["status"] == "processing"
