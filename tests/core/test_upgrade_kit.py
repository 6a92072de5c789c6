"""The kit's upgrade check, run against the memory store (which has no schema to migrate)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta

import attrs
import pytest

from jobs_core import MAX_PRIORITY, MIN_PRIORITY, Job, JobStatus, MemoryStore
from jobs_core.testing.upgrade import (
    RELEASE_1,
    UPGRADE_NOW,
    Layout,
    check_upgraded,
    jobs_in_every_status,
)


def test_the_upgrade_jobs_cover_every_status() -> None:
    jobs = jobs_in_every_status()
    assert {job.status for job in jobs} == set(JobStatus)
    assert len({job.id for job in jobs}) == len(jobs)


def test_an_older_layout_gets_only_the_jobs_it_can_hold() -> None:
    """Release 1 had no `cancelled` and no `cancel_requested`: none of its jobs needs
    them, and it still gets every status it had, each nullable field set and unset."""
    jobs = jobs_in_every_status(layout=RELEASE_1)
    assert {job.status for job in jobs} == RELEASE_1.statuses
    assert all(job.cancel_requested is None for job in jobs)
    assert {job.id for job in jobs} < {job.id for job in jobs_in_every_status()}
    for name in ("locked_until", "lock_token", "last_error"):
        assert {getattr(job, name) is None for job in jobs} == {True, False}, name


def test_a_layout_without_a_required_field_is_refused() -> None:
    lacking = Layout(RELEASE_1.statuses, RELEASE_1.fields - {"topic"})
    with pytest.raises(ValueError, match="topic"):
        jobs_in_every_status(layout=lacking)


async def test_a_store_holding_the_jobs_passes() -> None:
    store = MemoryStore()
    jobs = jobs_in_every_status()
    await store.insert(jobs)
    await check_upgraded(store, jobs, UPGRADE_NOW + timedelta(seconds=1))


async def test_a_store_that_changed_a_job_fails() -> None:
    store = MemoryStore()
    jobs = jobs_in_every_status()
    changed = [attrs.evolve(jobs[0], last_error="lost in migration"), *jobs[1:]]
    await store.insert(changed)
    with pytest.raises(AssertionError, match="read back as"):
        await check_upgraded(store, jobs, UPGRADE_NOW + timedelta(seconds=1))


async def test_a_store_that_lost_a_job_fails() -> None:
    store = MemoryStore()
    jobs = jobs_in_every_status()
    await store.insert(jobs[1:])
    with pytest.raises(Exception, match="00000000-0000-4000-8000-000000000001"):
        await check_upgraded(store, jobs, UPGRADE_NOW + timedelta(seconds=1))


def test_the_upgrade_jobs_hold_both_ends_of_the_priority_range_and_release_1_none() -> None:
    priorities = {job.priority for job in jobs_in_every_status()}
    assert {MIN_PRIORITY, 0, MAX_PRIORITY} <= priorities
    assert {job.priority for job in jobs_in_every_status(layout=RELEASE_1)} == {0}


class _ClaimsByRunAt(MemoryStore):
    """A store that forgot the priority: it claims in (`run_at`, `id`) order."""

    async def claim(
        self,
        *,
        topics: Collection[str],
        now: datetime,
        lease: timedelta,
        limit: int,
        caps: Mapping[str, int] | None = None,
    ) -> Sequence[Job]:
        claimed = await super().claim(topics=topics, now=now, lease=lease, limit=limit, caps=caps)
        return sorted(claimed, key=lambda job: (job.run_at, job.id))


async def test_a_store_that_claims_without_the_priority_fails() -> None:
    store = _ClaimsByRunAt()
    jobs = jobs_in_every_status()
    await store.insert(jobs)
    with pytest.raises(AssertionError):
        await check_upgraded(store, jobs, UPGRADE_NOW + timedelta(seconds=1))
