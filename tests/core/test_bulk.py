"""Bulk actions: each selected job through its own guarded transition; illegal ones are
skipped and counted, never an error."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobs_core import (
    BulkResult,
    EnqueueOptions,
    InvalidOptions,
    InvalidTopic,
    Job,
    Jobs,
    JobStatus,
)
from jobs_core.testing import FakeClock


async def _failed(jobs: Jobs, topic: str, n: int) -> list[Job]:
    """`n` jobs of `topic` that failed their only attempt."""
    queued = [
        await jobs.enqueue_with_options(topic, {"n": i}, EnqueueOptions(max_retries=0))
        for i in range(n)
    ]

    def boom(job: Job) -> None:
        raise RuntimeError("boom")

    if topic not in jobs.topics:
        jobs.register(topic, boom)
    while await jobs.run_once():
        pass
    return [await jobs.get(job.id) for job in queued]


async def test_requeue_by_status_takes_every_failed_job(jobs: Jobs) -> None:
    failed = await _failed(jobs, "t", 3)
    pending = await jobs.enqueue("other", None)
    assert await jobs.bulk_requeue(status="failed") == BulkResult(3, 3, 0)
    assert [(await jobs.get(job.id)).status for job in failed] == [JobStatus.PENDING] * 3
    assert (await jobs.get(pending.id)).status is JobStatus.PENDING


async def test_ids_not_legal_for_the_action_are_skipped_and_unknown_ones_unmatched(
    jobs: Jobs,
) -> None:
    (failed,) = await _failed(jobs, "t", 1)
    pending = await jobs.enqueue("other", None)
    unknown = "0190a000-0000-7000-8000-00000000dead"
    result = await jobs.bulk_requeue(ids=[failed.id, pending.id, unknown, failed.id])
    assert result == BulkResult(matched=2, changed=1, skipped=1)
    assert (await jobs.get(failed.id)).status is JobStatus.PENDING


async def test_filters_combine_and_before_compares_the_last_change(
    jobs: Jobs, clock: FakeClock
) -> None:
    old = await _failed(jobs, "t", 2)
    clock.advance(timedelta(hours=1))
    cutoff = clock.now()
    clock.advance(timedelta(hours=1))
    new = await _failed(jobs, "t", 1)
    await _failed(jobs, "u", 1)
    assert await jobs.bulk_delete(topic="t", before=cutoff) == BulkResult(2, 2, 0)
    assert {job.id for job in (await jobs.list(topic="t")).items} == {new[0].id}
    assert all(job.updated < cutoff for job in old)


async def test_max_jobs_bounds_the_selection_newest_first(jobs: Jobs) -> None:
    queued = [await jobs.enqueue("t", i) for i in range(5)]
    assert await jobs.bulk_cancel(topic="t", max_jobs=2) == BulkResult(2, 2, 0)
    statuses = [(await jobs.get(job.id)).status for job in queued]
    assert statuses == [JobStatus.PENDING] * 3 + [JobStatus.CANCELLED] * 2


async def test_a_dry_run_counts_and_changes_nothing(jobs: Jobs) -> None:
    failed = await _failed(jobs, "t", 4)
    assert await jobs.bulk_requeue(status="failed", dry_run=True) == BulkResult(4, 0, 0)
    assert [(await jobs.get(job.id)).status for job in failed] == [JobStatus.FAILED] * 4


async def test_a_selection_of_more_than_one_page_is_read_whole_before_acting(
    jobs: Jobs,
) -> None:
    """Requeueing moves jobs out of the `failed` filter: reading the selection first
    keeps later pages from shifting under the action."""
    await _failed(jobs, "t", 1203)
    assert await jobs.bulk_requeue(status="failed") == BulkResult(1203, 1203, 0)
    assert (await jobs.stats()).failed == 0


async def test_a_running_job_gets_a_cancel_request(jobs: Jobs) -> None:
    job = await jobs.enqueue("t", None)
    (claimed,) = await jobs.store.claim(
        topics=["t"], now=jobs.clock.now(), lease=timedelta(minutes=1), limit=1
    )
    assert await jobs.bulk_cancel(ids=[job.id]) == BulkResult(1, 1, 0)
    stored = await jobs.get(claimed.id)
    assert (stored.status, stored.cancel_requested) == (JobStatus.PROCESSING, jobs.clock.now())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs ids or a filter"),
        ({"ids": ["a"], "topic": "t"}, "ids or a filter, not both"),
        ({"ids": "abc"}, "not one string"),
        ({"ids": [1]}, "ids must be strings"),
        ({"ids": ["a", "b"], "max_jobs": 1}, "more than max_jobs"),
        ({"status": "failed", "max_jobs": 0}, "max_jobs must be from 1"),
        ({"status": "failed", "max_jobs": True}, "max_jobs must be an integer"),
        ({"status": "finished"}, "status"),
    ],
)
async def test_a_bad_selection_is_refused_before_anything_changes(
    jobs: Jobs, options: dict[str, object], message: str
) -> None:
    (failed,) = await _failed(jobs, "t", 1)
    with pytest.raises(InvalidOptions, match=message):
        await jobs.bulk_requeue(**options)  # type: ignore[arg-type]
    assert (await jobs.get(failed.id)).status is JobStatus.FAILED


async def test_a_bad_topic_is_refused(jobs: Jobs) -> None:
    with pytest.raises(InvalidTopic):
        await jobs.bulk_delete(topic="")
