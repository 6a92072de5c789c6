"""Times outside what every store round-trips are refused; an unreadable row or a failing
rescue sweep cannot stop the worker (probe D1)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from jobs_core import (
    EARLIEST_TIME,
    LATEST_TIME,
    EnqueueOptions,
    InvalidOptions,
    Job,
    Jobs,
    JobsConfig,
    JobStatus,
    MemoryStore,
    StoreError,
    UnreadableJob,
)
from jobs_core.testing import FakeClock
from tests.core.conftest import T0, settle, until

OUT_OF_RANGE = [
    datetime(1, 1, 1, tzinfo=UTC),  # PostgreSQL stores it as -infinity
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # ... and this as infinity
    datetime(1, 1, 1, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(9999, 12, 31, tzinfo=UTC),
]


@pytest.mark.parametrize("when", OUT_OF_RANGE, ids=str)
async def test_run_at_outside_the_stored_range_is_refused(jobs: Jobs, when: datetime) -> None:
    with pytest.raises(InvalidOptions, match=r"run_at must be between 0001-01-02T00:00:00Z and"):
        await jobs.enqueue_at("t", None, when)
    with pytest.raises(InvalidOptions, match="run_at must be between"):
        await jobs.enqueue_with_options("t", None, EnqueueOptions(run_at=when))
    assert (await jobs.list()).total == 0


async def test_the_ends_of_the_range_are_accepted(jobs: Jobs) -> None:
    for when in (EARLIEST_TIME, LATEST_TIME):
        job = await jobs.enqueue_at("t", None, when)
        assert (await jobs.get(job.id)).run_at == when


def test_a_job_cannot_hold_a_time_outside_the_range() -> None:
    with pytest.raises(ValueError, match="created must be between"):
        Job(
            id="x",
            topic="t",
            payload=None,
            status=JobStatus.PENDING,
            run_at=T0,
            max_retries=0,
            created=datetime(1, 1, 1, tzinfo=UTC),
            updated=T0,
        )


class NoSweepStore(MemoryStore):
    """A store whose rescue sweep always fails, as it did on a poisoned row."""

    sweeps = 0

    async def expired(self, *, now: datetime, limit: int) -> Sequence[Job]:
        self.sweeps += 1
        raise StoreError("this row cannot be read")


async def test_a_failing_rescue_sweep_does_not_stop_claims(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A delayed job runs once due, with no enqueue wake-up, though every sweep fails."""
    store = NoSweepStore()
    jobs = Jobs(store, clock=clock, config=JobsConfig(poll_interval=timedelta(seconds=1)))
    done = asyncio.Event()

    async def handler(job: Job) -> None:
        done.set()

    jobs.register("t", handler)
    await jobs.enqueue_at("t", None, T0 + timedelta(seconds=3))
    await jobs.start()
    with caplog.at_level(logging.WARNING, "jobs_core.worker"):
        for _ in range(5):  # one poll interval per step; the job is due after 3
            await until(lambda: clock.sleepers > 0)
            clock.advance(timedelta(seconds=1))
            await settle()
        await asyncio.wait_for(done.wait(), timeout=5)
    assert store.sweeps >= 1
    assert jobs.running
    assert "store error while rescuing expired leases" in caplog.text
    await jobs.stop()


async def test_failing_sweeps_back_off_on_their_own_schedule(clock: FakeClock) -> None:
    """Sweeps back off (doubling) while the worker keeps polling every second."""
    store = NoSweepStore()
    jobs = Jobs(store, clock=clock, config=JobsConfig(poll_interval=timedelta(seconds=1)))
    jobs.register("t", lambda job: None)
    await jobs.start()
    for _ in range(10):
        await until(lambda: clock.sleepers > 0)
        clock.advance(timedelta(seconds=1))
        await settle()
    # 10 s of polls: sweeps at about 0, 2, 6 and 11 s, not one per poll.
    assert 2 <= store.sweeps <= 4
    await jobs.stop()


class UnreadableStore(MemoryStore):
    """A store holding one row (`bad_id`) that cannot be read, in `status`."""

    def __init__(self, bad_id: str, status: str | None) -> None:
        super().__init__()
        self.bad_id = bad_id
        self.status = status
        self.deleted: list[tuple[str, JobStatus]] = []

    async def get(self, job_id: str) -> Job:
        if job_id == self.bad_id:
            raise UnreadableJob(job_id, "run_at holds -infinity", self.status)
        return await super().get(job_id)

    async def delete(self, job_id: str, *, expected_status: JobStatus) -> bool:
        if job_id == self.bad_id:
            self.deleted.append((job_id, expected_status))
            return expected_status == self.status
        return await super().delete(job_id, expected_status=expected_status)


@pytest.mark.parametrize("status", ["pending", "failed"])
async def test_an_unreadable_row_can_be_deleted(clock: FakeClock, status: str) -> None:
    """delete's compare-and-set uses the row's status column when the row is unreadable."""
    store = UnreadableStore("bad", status)
    jobs = Jobs(store, clock=clock)
    await jobs.delete("bad")
    assert store.deleted == [("bad", JobStatus(status))]


@pytest.mark.parametrize("status", ["processing", "completed", None])
async def test_an_unreadable_row_that_delete_does_not_allow_stays(
    clock: FakeClock, status: str | None
) -> None:
    store = UnreadableStore("bad", status)
    jobs = Jobs(store, clock=clock)
    with pytest.raises(UnreadableJob, match="stored job 'bad' cannot be read: run_at holds"):
        await jobs.delete("bad")
    assert store.deleted == []


def test_unreadable_job_names_the_job_and_is_a_store_error() -> None:
    error = UnreadableJob("j1", "run_at holds -infinity", "failed", store="SQLite store /x.db")
    assert isinstance(error, StoreError)
    assert (
        str(error) == "SQLite store /x.db: stored job 'j1' cannot be read: run_at holds -infinity"
    )
    assert error.summary == "stored job 'j1' cannot be read: run_at holds -infinity"
    assert (error.job_id, error.status) == ("j1", "failed")
