"""The app's lifespan runs the worker: jobs enqueued over HTTP get done, and shutdown
stops the worker."""

from __future__ import annotations

import asyncio

from litestar.testing import AsyncTestClient

from jobs_core import Job, Jobs, MemoryStore
from jobs_http import create_app

from .conftest import AUTH, TOKEN


async def test_worker_runs_inside_the_app() -> None:
    jobs = Jobs(MemoryStore())
    done = asyncio.Event()

    async def handler(job: Job) -> None:
        done.set()

    jobs.register("work", handler)
    app = create_app(jobs, token=TOKEN)
    async with AsyncTestClient(app=app) as c:
        assert jobs.running
        response = await c.post("/api/jobs/enqueue", json={"topic": "work"}, headers=AUTH)
        await asyncio.wait_for(done.wait(), timeout=10)
        for _ in range(200):  # the result is written right after the handler returns
            got = (await c.get(f"/api/jobs/{response.json()['id']}", headers=AUTH)).json()
            if got["status"] == "completed":
                break
            await asyncio.sleep(0.01)
        assert got["status"] == "completed"
        stats = (await c.get("/api/jobs/stats", headers=AUTH)).json()
        assert stats["completed"] == 1
        assert stats["success_rate"] == 1.0
    assert not jobs.running


async def test_run_worker_false_leaves_the_worker_alone() -> None:
    jobs = Jobs(MemoryStore())
    app = create_app(jobs, token=TOKEN, run_worker=False)
    async with AsyncTestClient(app=app):
        assert not jobs.running
