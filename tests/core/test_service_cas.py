"""`requeue` and `delete` when their compare-and-set writes lose: busy, never a lie."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from jobs_core import EnqueueOptions, Job, JobBusy, Jobs, JobStatus, JobUpdate, MemoryStore
from jobs_core.testing import FakeClock
from tests.core.conftest import T0

#: Rounds `Jobs.requeue` / `Jobs.delete` try before giving up (`_service._CAS_ATTEMPTS`).
ROUNDS = 5


class LosingStore(MemoryStore):
    """A `MemoryStore` whose guarded writes lose the first `losses` times while armed."""

    def __init__(self, losses: int) -> None:
        super().__init__()
        self.losses = losses
        self.armed = False

    def _lose(self) -> bool:
        if self.armed and self.losses > 0:
            self.losses -= 1
            return True
        return False

    async def update(self, updates: Sequence[JobUpdate]) -> Sequence[bool]:
        if self._lose():
            return [False] * len(updates)
        return await super().update(updates)

    async def delete(self, job_id: str, *, expected_status: JobStatus) -> bool:
        if self._lose():
            return False
        return await super().delete(job_id, expected_status=expected_status)


async def _failed_job(store: LosingStore) -> tuple[Jobs, Job]:
    jobs = Jobs(store, clock=FakeClock(T0))

    def fail(job: Job) -> None:
        raise RuntimeError("boom")

    jobs.register("t", fail)
    job = await jobs.enqueue_with_options("t", None, EnqueueOptions(max_retries=0))
    await jobs.run_once()
    failed = await jobs.get(job.id)
    assert failed.status is JobStatus.FAILED
    store.armed = True
    return jobs, failed


async def test_requeue_that_loses_every_round_raises_busy_and_stores_nothing() -> None:
    store = LosingStore(losses=10**6)
    jobs, failed = await _failed_job(store)
    with pytest.raises(JobBusy, match="requeue"):
        await jobs.requeue(failed.id)
    assert await jobs.get(failed.id) == failed


async def test_delete_that_loses_every_round_raises_busy_not_not_found() -> None:
    store = LosingStore(losses=10**6)
    jobs, failed = await _failed_job(store)
    with pytest.raises(JobBusy, match="delete"):
        await jobs.delete(failed.id)
    assert await jobs.get(failed.id) == failed


@pytest.mark.parametrize("losses", [1, ROUNDS - 1])
async def test_requeue_that_wins_a_later_round_returns_what_it_stored(losses: int) -> None:
    store = LosingStore(losses=losses)
    jobs, failed = await _failed_job(store)
    requeued = await jobs.requeue(failed.id)
    assert requeued.status is JobStatus.PENDING
    assert await jobs.get(failed.id) == requeued


@pytest.mark.parametrize("losses", [1, ROUNDS - 1])
async def test_delete_that_wins_a_later_round_deletes(losses: int) -> None:
    store = LosingStore(losses=losses)
    jobs, failed = await _failed_job(store)
    await jobs.delete(failed.id)
    assert store.losses == 0
    assert (await jobs.stats()).total == 0
