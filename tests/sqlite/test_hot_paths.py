"""The fast paths: guarded batches on the raw cursor, and the store thread (cancelled
calls never run, close finishes what was queued)."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest
from sqlalchemy import event

from jobs_core import JOB_FIELDS, Job, JobStatus, JobUpdate
from jobs_core.testing.contract import LEASE, make_job
from jobs_sqlite import SQLiteStore, jobs_table
from jobs_sqlite._rows import TimeTexts, format_time, from_row, insert_values, parse_time

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _traced(store: SQLiteStore) -> list[str]:
    """Every statement SQLite runs on the store's connection (opened after this call)."""
    seen: list[str] = []

    @event.listens_for(store.engine, "connect")
    def record(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.set_trace_callback(seen.append)

    return seen


def _finish(job: Job, token: str | None) -> JobUpdate:
    done = attrs.evolve(job, status=JobStatus.COMPLETED, lock_token=None, locked_until=None)
    return JobUpdate(job=done, expected_status=JobStatus.PROCESSING, expected_lock_token=token)


async def test_a_batch_with_stale_writes_and_repeats_applies_in_order(db_path: Path) -> None:
    """A stale write in a batch is refused alone; two writes to one job apply in order,
    the second guarded by what the first wrote."""
    store = SQLiteStore(db_path)
    seen = _traced(store)
    try:
        await store.insert([make_job() for _ in range(3)])
        a, b, c = await store.claim(topics=["t"], now=T0, lease=LEASE, limit=3)
        assert a.lock_token is not None
        retry = attrs.evolve(a, status=JobStatus.PENDING, lock_token=None, locked_until=None)
        again = attrs.evolve(retry, status=JobStatus.FAILED, last_error="gave up")
        flags = await store.update(
            [
                JobUpdate(
                    job=retry,
                    expected_status=JobStatus.PROCESSING,
                    expected_lock_token=a.lock_token,
                ),
                _finish(b, "not-the-token"),  # stale: refused
                JobUpdate(job=again, expected_status=JobStatus.PENDING, expected_lock_token=None),
                _finish(c, c.lock_token),
            ]
        )
        assert flags == [True, False, True, True]
        assert (await store.get(a.id)).status is JobStatus.FAILED
        assert await store.get(b.id) == b
        assert (await store.get(c.id)).status is JobStatus.COMPLETED
        assert await store.update([_finish(b, b.lock_token)]) == [True]
    finally:
        await store.close()
    # The mixed batch of 4 as one executemany (traced row by row), then, since a write
    # was refused, rolled back and redone row by row in order; then the last single
    # write, a completion: the one-statement form.
    writes = [s for s in seen if s.startswith("UPDATE jobs SET") and "RETURNING" not in s]
    assert len(writes) == 4 + 4 + 1, seen
    assert ["FROM (VALUES" in s for s in writes[4:]] == [False, True, False, True, True]


async def test_a_batch_completing_one_job_twice_applies_the_first(db_path: Path) -> None:
    """A job given twice in one batch of completions matches once: the batch is redone
    row by row, and the second write, guarded by a lease the first ended, is refused."""
    store = SQLiteStore(db_path)
    try:
        await store.insert([make_job() for _ in range(2)])
        a, b = await store.claim(topics=["t"], now=T0, lease=LEASE, limit=2)
        twice = [_finish(a, a.lock_token), _finish(b, b.lock_token), _finish(a, a.lock_token)]
        assert await store.update(twice) == [True, True, False]
        assert [(await store.get(job.id)).status for job in (a, b)] == [JobStatus.COMPLETED] * 2
    finally:
        await store.close()


async def test_an_all_applied_batch_of_completions_is_one_statement(db_path: Path) -> None:
    """The common case, a worker's completions, costs one statement in one transaction
    (as the raw benchmark floor's loop does), no row-by-row redo."""
    store = SQLiteStore(db_path)
    seen = _traced(store)
    try:
        await store.insert([make_job() for _ in range(5)])
        claimed = await store.claim(topics=["t"], now=T0, lease=LEASE, limit=5)
        del seen[:]
        flags = await store.update([_finish(job, job.lock_token) for job in claimed])
        assert flags == [True] * 5
        words = [s.split(None, 1)[0] for s in seen]
        assert words == ["BEGIN", "UPDATE", "COMMIT"], seen
        stored = [(await store.get(job.id)).status for job in claimed]
        assert stored == [JobStatus.COMPLETED] * 5
    finally:
        await store.close()


async def test_an_all_applied_batch_of_other_writes_is_one_statement_run(
    db_path: Path,
) -> None:
    """Any other batch costs one executemany in one transaction, no row-by-row redo."""
    store = SQLiteStore(db_path)
    seen = _traced(store)
    try:
        await store.insert([make_job() for _ in range(5)])
        claimed = await store.claim(topics=["t"], now=T0, lease=LEASE, limit=5)
        del seen[:]
        released = [
            JobUpdate(
                job=attrs.evolve(job, status=JobStatus.PENDING, lock_token=None, locked_until=None),
                expected_status=JobStatus.PROCESSING,
                expected_lock_token=job.lock_token,
            )
            for job in claimed
        ]
        assert await store.update(released) == [True] * 5
        words = [s.split(None, 1)[0] for s in seen]
        assert words == ["BEGIN", *["UPDATE"] * 5, "COMMIT"], seen
    finally:
        await store.close()


async def test_a_call_cancelled_before_its_turn_never_runs(db_path: Path) -> None:
    """While another connection holds the write lock the store thread waits in an insert;
    a claim queued behind it and cancelled meanwhile is skipped: no job is leased."""
    store = SQLiteStore(db_path)
    try:
        job = make_job()
        await store.insert([job])
        holder = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        try:
            waiting = asyncio.create_task(store.insert([make_job()]))
            claim = asyncio.create_task(store.claim(topics=["t"], now=T0, lease=LEASE, limit=5))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            claim.cancel()
        finally:
            holder.execute("COMMIT")
            holder.close()
        await waiting
        with pytest.raises(asyncio.CancelledError):
            await claim
        assert (await store.get(job.id)).status is JobStatus.PENDING
        counts = await store.count_by_status()
        assert counts[JobStatus.PENDING] == 2
    finally:
        await store.close()


async def test_close_finishes_the_calls_already_made(db_path: Path) -> None:
    """Calls queued before close() complete; calls after it are refused."""
    store = SQLiteStore(db_path)
    jobs = [make_job() for _ in range(20)]
    inserts = [asyncio.create_task(store.insert([job])) for job in jobs]
    await asyncio.sleep(0)
    await store.close()
    await asyncio.gather(*inserts)
    reopened = SQLiteStore(db_path)
    try:
        assert (await reopened.count_by_status())[JobStatus.PENDING] == 20
    finally:
        await reopened.close()


def test_rows_round_trip_exactly() -> None:
    """Positional insert values read back as the same job, to the microsecond, in UTC."""
    odd = datetime(2031, 2, 3, 4, 5, 6, 789, tzinfo=UTC)
    job = attrs.evolve(
        make_job(now=odd, run_at=odd + timedelta(seconds=1)),
        status=JobStatus.PROCESSING,
        lock_token="t0k",
        locked_until=odd + timedelta(minutes=5, microseconds=1),
    )
    back = from_row(insert_values(job), "x.db")
    assert back == job
    assert back.run_at.tzinfo is UTC
    assert parse_time(format_time(odd)) == odd


def test_time_texts_agree_with_format_and_parse_and_stay_bounded() -> None:
    """The remembered conversions give what formatting and parsing give, both ways, and
    the memory forgets everything once it reaches its limit."""
    texts = TimeTexts(limit=3)
    moments = [T0 + timedelta(microseconds=i) for i in range(10)]
    for moment in moments:
        assert texts.text(moment) == format_time(moment)
        assert texts.time(format_time(moment)) == moment
        assert texts.text(moment) == format_time(moment)  # remembered
        assert len(texts) <= 3
    other_zone = moments[0].astimezone(timezone(timedelta(hours=5)))
    assert texts.text(other_zone) == format_time(moments[0])


def test_the_table_has_one_column_per_job_field_in_order() -> None:
    """Rows are read back positionally in `JOB_FIELDS` order; the table declares that."""
    assert tuple(column.name for column in jobs_table.columns) == JOB_FIELDS
