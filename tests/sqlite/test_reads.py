"""Reads run on their own thread and connection (issue 14, defect 4): they answer while
the writer waits for the file's lock, and writes go on while a read is stuck; polled
counts share a queued query; the status index reaches files made before it existed."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from sqlalchemy import event

from jobs_core import JobNotFound, JobQuery, JobStatus, JobUpdate, StoreError
from jobs_core.testing.contract import LEASE, make_job
from jobs_sqlite import SCHEMA_VERSION, SQLiteStore
from jobs_sqlite._statements import COUNTED, COUNTS
from tests.sqlite.test_migrations import build_v1_file

T0 = datetime(2030, 1, 1, tzinfo=UTC)
#: Long enough that nothing here ever waits it out: a read stuck behind a write fails
#: the test by `PATIENCE`, long before the busy timeout would free it.
BUSY = timedelta(seconds=60)
PATIENCE = 10.0


class _ReadGate:
    """Stops the next statement run off the test's own thread (the read path) until
    opened: a progress handler on every connection of the store's engine."""

    def __init__(self, store: SQLiteStore) -> None:
        self.armed = threading.Event()
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.statements: list[str] = []
        here = threading.current_thread()

        def handler() -> int:
            if self.armed.is_set() and threading.current_thread() is not here:
                self.armed.clear()
                self.entered.set()
                self.opened.wait(PATIENCE)
            return 0

        @event.listens_for(store.engine, "connect")
        def install(dbapi_connection: Any, record: Any) -> None:
            dbapi_connection.set_progress_handler(handler, 10)
            dbapi_connection.set_trace_callback(self.statements.append)

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, PATIENCE), "no read started"


@pytest.fixture
def lock_holder(db_path: Path) -> Iterator[sqlite3.Connection]:
    holder = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    try:
        yield holder
    finally:
        holder.close()


def _finish(job: Any) -> JobUpdate:
    done = attrs.evolve(job, status=JobStatus.COMPLETED, lock_token=None, locked_until=None)
    return JobUpdate(
        job=done, expected_status=JobStatus.PROCESSING, expected_lock_token=job.lock_token
    )


async def test_reads_answer_while_the_writer_waits_for_the_lock(
    db_path: Path, lock_holder: sqlite3.Connection
) -> None:
    """Another process holds the write lock: the store's insert waits on the writer
    thread, and get, list and the counts answer meanwhile, from committed data."""
    store = SQLiteStore(db_path, busy_timeout=BUSY)
    try:
        job = make_job()
        await store.insert([job])
        lock_holder.execute("BEGIN IMMEDIATE")
        try:
            waiting = asyncio.create_task(store.insert([make_job()]))
            await asyncio.sleep(0)  # it tried once here, and went to the writer thread
            reads = asyncio.gather(
                store.get(job.id),
                store.list(JobQuery(status=JobStatus.PENDING)),
                store.count_by_status(),
                store.expired(now=T0, limit=10),
            )
            got, page, counts, expired = await asyncio.wait_for(reads, PATIENCE)
            assert not waiting.done()
        finally:
            lock_holder.execute("COMMIT")
        await waiting
        assert got == job
        assert page.total == 1
        assert counts[JobStatus.PENDING] == 1
        assert expired == []
        assert (await store.count_by_status())[JobStatus.PENDING] == 2
    finally:
        await store.close()


async def test_claims_and_results_go_on_while_a_read_is_stuck(db_path: Path) -> None:
    """A read held inside SQLite does not hold up the worker's claim and result write,
    and it answers once let go."""
    store = SQLiteStore(db_path, busy_timeout=BUSY)
    gate = _ReadGate(store)
    try:
        await store.insert([make_job() for _ in range(3)])
        gate.armed.set()
        stuck = asyncio.create_task(store.list(JobQuery()))
        try:
            await gate.wait_entered()
            claimed = await asyncio.wait_for(
                store.claim(topics=["t"], now=T0, lease=LEASE, limit=2), PATIENCE
            )
            flags = await asyncio.wait_for(
                store.update([_finish(job) for job in claimed]), PATIENCE
            )
            await asyncio.wait_for(store.insert([make_job()]), PATIENCE)
            assert flags == [True, True]
            assert not stuck.done()
        finally:
            gate.opened.set()
        assert (await stuck).total == 3  # its snapshot began before the new job's commit
        counts = await store.count_by_status()
        assert (counts[JobStatus.PENDING], counts[JobStatus.COMPLETED]) == (2, 2)
    finally:
        await store.close()


async def test_counts_asked_for_while_one_is_queued_share_it(db_path: Path) -> None:
    """Eight callers polling the counts while a read runs cost one query between them,
    and each sees what was committed before it asked."""
    store = SQLiteStore(db_path, busy_timeout=BUSY)
    gate = _ReadGate(store)
    try:
        await store.insert([make_job()])
        gate.armed.set()
        stuck = asyncio.create_task(store.get("nobody"))
        await gate.wait_entered()
        await store.insert([make_job()])  # committed before any of the counts is asked
        polls = [asyncio.create_task(store.count_by_status()) for _ in range(8)]
        await asyncio.sleep(0)
        gate.opened.set()
        results = await asyncio.gather(*polls)
        assert all(counts[JobStatus.PENDING] == 2 for counts in results)
        assert [s for s in gate.statements if s == COUNTS] == [COUNTS]
        with pytest.raises(JobNotFound):
            await stuck
        assert (await store.count_by_status())[JobStatus.PENDING] == 2
        assert [s for s in gate.statements if s == COUNTS] == [COUNTS] * 2
    finally:
        await store.close()


async def test_the_read_connection_refuses_writes(store: SQLiteStore) -> None:
    """`PRAGMA query_only` on the read connection: a read that wrote would take the
    write lock beside the writer thread's."""
    await store.count_by_status()
    reader = store._reader  # the guard on the read connection itself
    assert reader is not None
    raw = reader.connection.dbapi_connection
    assert raw is not None

    def try_write() -> None:
        raw.execute("DELETE FROM jobs")

    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await store._reads.submit(try_write)


async def test_reads_after_close_are_refused_and_close_ends_both_threads(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    await store.insert([make_job()])
    pending = asyncio.create_task(store.list(JobQuery()))
    await asyncio.sleep(0)
    await store.close()
    assert (await pending).total == 1  # made before close: answered
    with pytest.raises(StoreError, match="closed"):
        await store.count_by_status()
    for thread in (store._thread, store._reads):
        ended = thread._thread
        assert ended is not None
        await asyncio.to_thread(ended.join, PATIENCE)
        assert not ended.is_alive()


def test_counts_reads_the_statuses_it_names_in_order() -> None:
    """`COUNTS` is the total, then one count per `COUNTED` status, in that order."""
    parts = COUNTS.split("(SELECT count(*) FROM jobs")[2:]
    assert [part.split("'")[1] for part in parts] == [status.value for status in COUNTED]
    assert JobStatus.COMPLETED not in COUNTED


async def test_a_file_of_the_first_layout_gets_the_status_index_and_keeps_its_jobs(
    db_path: Path,
) -> None:
    """A file made before `jobs_status_created_idx` gets it when a store opens it; its
    jobs stay, and list by status uses the index instead of sorting."""
    jobs = [make_job() for _ in range(5)]
    build_v1_file(db_path, jobs)  # the released DDL, its jobs in that release's rows
    store = SQLiteStore(db_path)
    try:
        page = await store.list(JobQuery(status=JobStatus.PENDING, limit=10))
        assert [job.id for job in page.items] == [job.id for job in reversed(jobs)]
        assert (await store.count_by_status())[JobStatus.PENDING] == 5
    finally:
        await store.close()
    with sqlite3.connect(db_path) as raw:
        indexes = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        plan = raw.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM jobs WHERE status = 'pending'"
            " ORDER BY created DESC, id DESC LIMIT 20"
        ).fetchall()
        version = raw.execute("SELECT version FROM jobs_schema").fetchall()
    assert "jobs_status_created_idx" in indexes
    assert "jobs_status_created_idx" in str(plan), plan
    assert "TEMP B-TREE" not in str(plan), plan
    assert version == [(SCHEMA_VERSION,)]  # migrated, so release 1 refuses it
