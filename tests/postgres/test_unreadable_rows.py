"""Probe D1 on PostgreSQL: out-of-range times are refused; rows planted with `±infinity`
are named on read, moved out of the worker's way, and can be deleted."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from jobs_core import (
    EARLIEST_TIME,
    LATEST_TIME,
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
from jobs_postgres import PostgresStore
from tests.pg_admin import admin_connect, throwaway_database

T0 = datetime(2030, 1, 1, tzinfo=UTC)
Admin = psycopg.Connection[tuple[object, ...]]


def plant(db: Admin, table: str, job_id: str, **columns: object) -> None:
    """Overwrite columns of a stored job by raw SQL, as a bad migration or hand edit would."""
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = %s").format(sql.Identifier(name)) for name in columns
    )
    db.execute(
        sql.SQL("UPDATE {} SET {} WHERE id = %s").format(sql.Identifier(table), assignments),
        (*columns.values(), job_id),
    )


async def test_the_probe_sequence_is_refused(pg_store: PostgresStore) -> None:
    jobs = Jobs(pg_store)
    with pytest.raises(InvalidOptions, match="run_at must be between"):
        await jobs.enqueue_at("t", None, datetime(1, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidOptions, match="run_at must be between"):
        await jobs.enqueue_at("t", None, datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
    assert (await jobs.list()).total == 0


@pytest.mark.parametrize("stored", ["-infinity", "infinity"])
async def test_an_infinite_time_is_named_on_read_and_can_be_deleted(
    pg_store: PostgresStore, db: Admin, table: str, stored: str
) -> None:
    jobs = Jobs(pg_store, clock=FakeClock(T0))
    bad = await jobs.enqueue("t", None)
    plant(db, table, bad.id, run_at=stored)
    with pytest.raises(UnreadableJob, match=f"stored job '{bad.id}' cannot be read") as got:
        await jobs.get(bad.id)
    assert got.value.job_id == bad.id
    assert f"run_at holds {stored}" in str(got.value)
    assert got.value.status == "pending"
    with pytest.raises(UnreadableJob, match=bad.id):
        await jobs.list()
    await jobs.delete(bad.id)
    with pytest.raises(JobNotFound):
        await jobs.get(bad.id)


async def test_the_worker_goes_on_past_unreadable_rows(
    pg_store: PostgresStore, db: Admin, table: str
) -> None:
    """A due `-infinity` row and an expired unreadable lease are moved to `failed`; the
    readable jobs of the same claim and a delayed job still run, with no wake-up."""
    clock = FakeClock(T0)
    jobs = Jobs(pg_store, clock=clock)
    ran: list[str] = []

    async def handler(job: Job) -> None:
        ran.append(job.id)

    jobs.register("t", handler)
    due = await jobs.enqueue("t", None)
    claimed_bad = await jobs.enqueue("t", None)
    plant(db, table, claimed_bad.id, run_at="-infinity")
    stale_bad = await jobs.enqueue("t", None)
    plant(
        db,
        table,
        stale_bad.id,
        status="processing",
        lock_token="gone",
        locked_until="2029-01-01T00:00:00Z",
        created="-infinity",
    )
    delayed = await jobs.enqueue_at("t", None, T0 + timedelta(seconds=3))

    assert await jobs.run_once() == 1
    assert ran == [due.id]
    failed = await jobs.get(claimed_bad.id)  # its times were reset: readable again
    assert failed.status is JobStatus.FAILED
    assert failed.last_error is not None
    assert failed.last_error.startswith("moved to failed: the stored row could not be read")
    assert "run_at holds -infinity" in failed.last_error
    with pytest.raises(UnreadableJob, match=stale_bad.id) as still:
        await jobs.get(stale_bad.id)  # `created` is still -infinity, but it is failed now
    assert still.value.status == "failed"

    clock.advance(timedelta(seconds=3))
    assert await jobs.run_once() == 1
    assert ran == [due.id, delayed.id]
    await jobs.delete(stale_bad.id)
    await jobs.delete(claimed_bad.id)
    assert (await jobs.list()).total == 2


async def test_a_renewal_of_an_unreadable_row_loses_the_lease_and_fails_the_job(
    pg_store: PostgresStore, db: Admin, table: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As a claim does: the row is moved to `failed` and logged; the renewal reports the
    lease lost, and the other renewals of the batch hold."""
    await pg_store.insert([make_job(), make_job()])
    good, bad = await pg_store.claim(topics=["t"], now=T0, lease=LEASE, limit=2)
    plant(db, table, bad.id, created="-infinity")
    renewals = [
        transitions.update(
            job,
            transitions.renew(
                job, token=str(job.lock_token), now=T0, lease=LEASE, new_token=uuid.uuid4().hex
            ),
        )
        for job in (good, bad)
    ]
    with caplog.at_level(logging.ERROR, logger="jobs_postgres"):
        got = await pg_store.renew(renewals)
    assert list(got) == [renewals[0].job, None]
    assert any(bad.id in record.getMessage() for record in caplog.records)
    with pytest.raises(UnreadableJob) as still:
        await pg_store.get(bad.id)  # `created` is still -infinity, but it is failed now
    assert still.value.status == "failed"
    assert list(await pg_store.renew(renewals[1:])) == [None]


@pytest.fixture
def new_york_everywhere(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database whose sessions default to America/New_York, and a process in that zone."""
    with throwaway_database("jobs_tz") as url:
        with admin_connect(url) as admin:
            name = admin.execute("SELECT current_database()").fetchone()
            assert name is not None
            admin.execute(
                sql.SQL("ALTER DATABASE {} SET timezone = 'America/New_York'").format(
                    sql.Identifier(str(name[0]))
                )
            )
        monkeypatch.setenv("TZ", "America/New_York")
        time.tzset()
        try:
            yield url
        finally:
            monkeypatch.undo()
            time.tzset()


async def test_the_ends_of_the_range_round_trip_in_any_time_zone(new_york_everywhere: str) -> None:
    """asyncpg sends and reads `timestamptz` as UTC instants, so neither the session's nor
    the host's time zone changes what is stored (no session setting needed)."""
    store = PostgresStore(new_york_everywhere)
    jobs = Jobs(store)
    try:
        stored = [await jobs.enqueue_at("t", None, when) for when in (EARLIEST_TIME, LATEST_TIME)]
        for job, when in zip(stored, (EARLIEST_TIME, LATEST_TIME), strict=True):
            back = await jobs.get(job.id)
            assert back.run_at == when
            assert back.run_at.utcoffset() == timedelta(0)
    finally:
        await jobs.aclose()


@pytest.mark.parametrize(
    "history",
    ["{}", "null", '[{"attempt": "1"}]', '[{"attempt":1,"at":"x","error":"","traceback":null}]'],
)
async def test_a_corrupt_attempt_history_is_named_on_read(
    pg_store: PostgresStore, db: Admin, table: str, history: str
) -> None:
    jobs = Jobs(pg_store, clock=FakeClock(T0))
    bad = await jobs.enqueue("t", None)
    plant(db, table, bad.id, errors=psycopg.types.json.Jsonb(json.loads(history)))
    with pytest.raises(UnreadableJob, match=f"stored job '{bad.id}' cannot be read") as got:
        await jobs.get(bad.id)
    assert got.value.status == "pending"
    await jobs.delete(bad.id)
