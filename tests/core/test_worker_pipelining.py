"""The worker claims again while earlier results are still being written (issue 8), with
the write backlog capped, and loses or doubles no result when it stops mid-write."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta

import pytest

from jobs_core import Job, Jobs, JobsConfig, JobStatus, JobUpdate, MemoryStore
from jobs_core.testing import FakeClock
from tests.core.conftest import settle, until


class GatedStore(MemoryStore):
    """A store whose `update` waits until the test opens the gate, counting claims."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.claimed = 0
        self.writes_waiting = 0

    async def claim(self, **kwargs):  # type: ignore[no-untyped-def]
        jobs = await super().claim(**kwargs)
        self.claimed += len(jobs)
        return jobs

    async def update(self, updates: Sequence[JobUpdate]) -> Sequence[bool]:
        self.writes_waiting += 1
        try:
            await self.gate.wait()
        finally:
            self.writes_waiting -= 1
        return await super().update(updates)


def _config(pool: int) -> JobsConfig:
    return JobsConfig(worker_pool_size=pool, batch_size=pool)


async def test_claims_overlap_pending_writes_but_the_backlog_is_capped(clock: FakeClock) -> None:
    """Pool 2: while the first results wait for the store, the next 2 jobs are claimed and
    run; then claiming stops (at most one pool's worth of results waits to be written)."""
    store = GatedStore()
    jobs = Jobs(store, clock=clock, config=_config(2))
    ran: list[str] = []
    jobs.register("t", lambda job: ran.append(job.id))
    await jobs.enqueue_many("t", range(10))
    await jobs.start()
    await until(lambda: len(ran) == 4)
    await settle()
    assert store.claimed == 4  # 2 running-then-written + 2 more, and no further
    assert len(ran) == 4
    assert (await jobs.stats()).processing == 4
    store.gate.set()
    await until(lambda: len(ran) == 10)
    await jobs.stop()
    assert sorted(ran) == sorted(set(ran))
    assert (await jobs.stats()).completed == 10


async def test_stop_writes_results_still_queued_exactly_once(clock: FakeClock) -> None:
    """Stopping while completions wait on a slow store: every finished job ends completed,
    none is released or run twice, nothing is left processing."""
    store = GatedStore()
    jobs = Jobs(store, clock=clock, config=_config(3))
    ran: list[str] = []

    async def handler(job: Job) -> None:
        ran.append(job.id)

    jobs.register("t", handler)
    await jobs.enqueue_many("t", range(6))
    await jobs.start()
    await until(lambda: len(ran) == 6 and store.writes_waiting > 0)
    stopping = asyncio.create_task(jobs.stop(grace=timedelta(seconds=1)))
    await until(lambda: clock.sleepers > 0)  # the grace period is running
    clock.advance(timedelta(seconds=1))  # grace over: the waiting jobs are cancelled
    await settle()
    store.gate.set()
    await stopping
    stats = await jobs.stats()
    assert (stats.completed, stats.processing, stats.pending) == (6, 0, 0)
    assert len(ran) == len(set(ran)) == 6
    for job in (await jobs.list(limit=10)).items:
        assert (job.status, job.retries, job.lock_token) == (JobStatus.COMPLETED, 0, None)


class RefusingStore(MemoryStore):
    """A store whose guarded writes all find the row changed (as if the lease was lost)."""

    async def update(self, updates: Sequence[JobUpdate]) -> Sequence[bool]:
        return [False] * len(updates)


async def test_a_refused_result_is_logged_once_per_job(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Nobody awaits a single write any more: the writer reports each refusal, naming
    the job and what it recorded."""
    store = RefusingStore()
    jobs = Jobs(store, clock=clock, config=_config(2))
    jobs.register("t", lambda job: None)
    queued = await jobs.enqueue_many("t", range(3))
    with caplog.at_level(logging.WARNING, logger="jobs_core.worker"):
        assert await jobs.run_once() == 2
        assert await jobs.run_once() == 1  # run_once returns once its results settled
    refused = [r.getMessage() for r in caplog.records if "refused by the store" in r.getMessage()]
    assert sorted(refused) == sorted(
        f"job {job.id}: completed result refused by the store: the lease was lost"
        " (it expired and was rescued, or the job was changed)"
        for job in queued
    )
