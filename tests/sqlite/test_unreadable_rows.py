"""Probe D1 on SQLite: refused out-of-range times, and rows planted with times no job can
hold: reads name the job, the worker goes on claiming, the rows can be deleted."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobs_core import (
    InvalidOptions,
    Job,
    JobNotFound,
    Jobs,
    JobStatus,
    UnreadableJob,
)
from jobs_core import _transitions as transitions
from jobs_core.testing import FakeClock
from jobs_core.testing.contract import LEASE, make_job
from jobs_sqlite import SQLiteStore

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def plant(db_path: Path, job_id: str, **columns: object) -> None:
    """Overwrite columns of a stored job by raw SQL, as a bad migration or hand edit would."""
    with sqlite3.connect(db_path) as raw:
        raw.execute("PRAGMA ignore_check_constraints = ON")
        for name, value in columns.items():
            raw.execute(f"UPDATE jobs SET {name} = ? WHERE id = ?", (value, job_id))


async def test_the_probe_sequence_is_refused(db_path: Path) -> None:
    jobs = Jobs(SQLiteStore(db_path))
    try:
        with pytest.raises(InvalidOptions, match="run_at must be between"):
            await jobs.enqueue_at("t", None, datetime(1, 1, 1, tzinfo=UTC))
        with pytest.raises(InvalidOptions, match="run_at must be between"):
            await jobs.enqueue_at("t", None, datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
        assert (await jobs.list()).total == 0
    finally:
        await jobs.aclose()


async def test_an_unreadable_row_is_named_on_read_and_can_be_deleted(db_path: Path) -> None:
    jobs = Jobs(SQLiteStore(db_path), clock=FakeClock(T0))
    try:
        bad = await jobs.enqueue("t", None)
        plant(db_path, bad.id, run_at="0001-01-01T00:00:00.000000Z")
        with pytest.raises(UnreadableJob, match=f"stored job '{bad.id}' cannot be read") as got:
            await jobs.get(bad.id)
        assert got.value.job_id == bad.id
        assert "run_at" in str(got.value)
        with pytest.raises(UnreadableJob, match=bad.id):
            await jobs.list()
        await jobs.delete(bad.id)
        with pytest.raises(JobNotFound):
            await jobs.get(bad.id)
    finally:
        await jobs.aclose()


async def test_the_worker_goes_on_past_unreadable_rows(db_path: Path) -> None:
    """A due unreadable row and an expired unreadable lease are moved to `failed`; the
    readable jobs of the same claim and a delayed job still run, with no wake-up."""
    clock = FakeClock(T0)
    jobs = Jobs(SQLiteStore(db_path), clock=clock)
    ran: list[str] = []

    async def handler(job: Job) -> None:
        ran.append(job.id)

    jobs.register("t", handler)
    try:
        due = await jobs.enqueue("t", None)
        claimed_bad = await jobs.enqueue("t", None)
        plant(db_path, claimed_bad.id, run_at="0000-01-01T00:00:00.000000Z")
        stale_bad = await jobs.enqueue("t", None)
        plant(
            db_path,
            stale_bad.id,
            status="processing",
            lock_token="gone",
            locked_until="2029-01-01T00:00:00.000000Z",
            created="yesterday",
        )
        delayed = await jobs.enqueue_at("t", None, T0 + timedelta(seconds=3))

        assert await jobs.run_once() == 1
        assert ran == [due.id]
        failed = await jobs.get(claimed_bad.id)  # its times were reset: readable again
        assert failed.status is JobStatus.FAILED
        assert failed.last_error is not None
        assert failed.last_error.startswith("moved to failed: the stored row could not be read")
        assert failed.lock_token is None
        with pytest.raises(UnreadableJob, match=stale_bad.id) as still:
            await jobs.get(stale_bad.id)  # `created` is still corrupt, but it is failed now
        assert still.value.status == "failed"

        clock.advance(timedelta(seconds=3))
        assert await jobs.run_once() == 1
        assert ran == [due.id, delayed.id]
        await jobs.delete(stale_bad.id)
        await jobs.delete(claimed_bad.id)
        assert (await jobs.list()).total == 2
    finally:
        await jobs.aclose()


async def test_a_renewal_of_an_unreadable_row_loses_the_lease_and_fails_the_job(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """As a claim does: the row is moved to `failed` in the renewal's transaction and
    logged; the renewal reports the lease lost, and the other renewals of the batch hold."""
    store = SQLiteStore(db_path)
    try:
        await store.insert([make_job(), make_job()])
        good, bad = await store.claim(topics=["t"], now=T0, lease=LEASE, limit=2)
        plant(db_path, bad.id, created="yesterday")
        renewals = [
            transitions.update(
                job,
                transitions.renew(
                    job, token=str(job.lock_token), now=T0, lease=LEASE, new_token=uuid.uuid4().hex
                ),
            )
            for job in (good, bad)
        ]
        with caplog.at_level(logging.ERROR, logger="jobs_sqlite"):
            got = await store.renew(renewals)
        assert list(got) == [renewals[0].job, None]
        assert any(bad.id in record.getMessage() for record in caplog.records)
        with pytest.raises(UnreadableJob) as still:
            await store.get(bad.id)  # `created` is still corrupt, but it is failed now
        assert still.value.status == "failed"
        assert list(await store.renew(renewals[1:])) == [None]
    finally:
        await store.close()


@pytest.mark.parametrize(
    "history",
    [
        "{}",
        "not json",
        '[{"attempt": "1"}]',
        '[{"attempt":1,"at":"x","error":"","traceback":null}]',
    ],
)
async def test_a_corrupt_attempt_history_is_named_on_read(db_path: Path, history: str) -> None:
    jobs = Jobs(SQLiteStore(db_path), clock=FakeClock(T0))
    try:
        bad = await jobs.enqueue("t", None)
        plant(db_path, bad.id, errors=history)
        with pytest.raises(UnreadableJob, match="column errors") as got:
            await jobs.get(bad.id)
        assert got.value.job_id == bad.id
        await jobs.delete(bad.id)
    finally:
        await jobs.aclose()
