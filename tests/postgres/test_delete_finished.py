"""`PostgresStore.delete_finished`: one statement that never waits on a row lock, deletes
by primary key, and reports how many rows went."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import attrs
import psycopg

from jobs_core import FINAL_STATUSES, Job, JobStatus
from jobs_core.testing.contract import make_job
from jobs_postgres import PostgresStore
from jobs_postgres._statements import delete_finished

_T0 = datetime(2030, 1, 1, tzinfo=UTC)
#: A guard against a hang, never a wait: each call returns in milliseconds.
_NO_HANG = 10.0


def _finished(status: JobStatus, updated: datetime) -> Job:
    return attrs.evolve(make_job(now=updated), status=status, updated=updated)


def _ids(db: psycopg.Connection[Any], table: str) -> set[str]:
    return {str(row[0]) for row in db.execute(f"SELECT id FROM {table}")}


async def test_a_row_held_by_another_transaction_is_skipped_not_waited_for(
    pg_store: PostgresStore, table: str, db: psycopg.Connection[Any], pg_url: str
) -> None:
    """While a requeue (here: an open `SELECT ... FOR UPDATE`) holds the oldest failed
    job, a round deletes the others at once; the held one goes in a later round."""
    jobs = [_finished(JobStatus.FAILED, _T0 + timedelta(seconds=i)) for i in range(4)]
    await pg_store.insert(jobs)
    before = _T0 + timedelta(hours=1)
    with psycopg.connect(pg_url) as holder:
        holder.execute(f"SELECT id FROM {table} WHERE id = %s FOR UPDATE", (jobs[0].id,))
        count = await asyncio.wait_for(
            pg_store.delete_finished(statuses=[JobStatus.FAILED], before=before, limit=10),
            _NO_HANG,
        )
        assert count == 3
        assert _ids(db, table) == {jobs[0].id}
        holder.rollback()
    again = await pg_store.delete_finished(statuses=FINAL_STATUSES, before=before, limit=10)
    assert again == 1
    assert _ids(db, table) == set()


async def test_a_job_being_requeued_is_left_alone_without_waiting(
    pg_store: PostgresStore, table: str, pg_url: str
) -> None:
    """A requeue not yet committed holds the row: the round skips it at once (it does not
    wait for the outcome), and after the commit the job is pending, not deleted."""
    job = _finished(JobStatus.FAILED, _T0)
    await pg_store.insert([job])
    before = _T0 + timedelta(hours=1)
    with psycopg.connect(pg_url) as holder:
        holder.execute(
            f"UPDATE {table} SET status = 'pending', updated = %s WHERE id = %s",
            (_T0 + timedelta(minutes=1), job.id),
        )
        count = await asyncio.wait_for(
            pg_store.delete_finished(statuses=FINAL_STATUSES, before=before, limit=10),
            _NO_HANG,
        )
        holder.commit()
    assert count == 0
    assert (await pg_store.get(job.id)).status is JobStatus.PENDING
    assert await pg_store.delete_finished(statuses=FINAL_STATUSES, before=before, limit=10) == 0


async def test_the_plan_deletes_by_primary_key(pg_store: PostgresStore, pg_url: str) -> None:
    """The DELETE reaches its rows through the primary key (never a scan of the table),
    and each status's pick locks rows (`LockRows`) rather than waiting on them.

    On a table of a thousand analysed rows: on an empty one the planner guesses the row
    count from the row width (each new column shrinks it), and a scan of a tiny table
    rightly beats the index."""
    await pg_store.insert([make_job() for _ in range(1000)])
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'ANALYZE "{pg_store.table.name}"')
    finally:
        await conn.close()
    for statuses in [(JobStatus.COMPLETED,), (JobStatus.COMPLETED, JobStatus.FAILED)]:
        text = delete_finished(pg_store._schema, statuses)
        conn = await asyncpg.connect(pg_url)
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                await conn.execute(f"PREPARE retention AS {text}")
                rows = await conn.fetch(
                    "EXPLAIN (COSTS OFF) EXECUTE retention('2030-01-01T00:00:00Z', 100)"
                )
        finally:
            await conn.close()
        plan = "\n".join(row[0] for row in rows)
        assert f"Index Scan on {pg_store.table.name}_pkey" in plan or (
            f"Index Scan using {pg_store.table.name}_pkey" in plan
        ), plan
        assert "Index Cond: (id = ANY" in plan, plan
        assert plan.count("LockRows") == len(statuses), plan
