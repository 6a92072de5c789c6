"""Small uncontended writes run on the caller's thread; anything that would wait (another
connection holds the lock), flush (`synchronous=FULL`) or take long (a big batch) runs on
the store thread; WAL checkpoints stay off the caller's thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
from sqlalchemy import event

from jobs_core import JobStatus, JobUpdate
from jobs_core import _transitions as transitions
from jobs_core.testing.contract import LEASE, JobStoreContract, make_job
from jobs_sqlite import LOOP_ROWS, SQLiteStore
from jobs_sqlite._store import _CHECKPOINT_AFTER

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _threads_of_statements(store: SQLiteStore) -> list[tuple[str, str]]:
    """(thread name, first word) of every statement SQLite runs on the store's connection."""
    seen: list[tuple[str, str]] = []

    @event.listens_for(store.engine, "connect")
    def record(dbapi_connection: Any, record: Any) -> None:
        def trace(statement: str) -> None:
            seen.append((threading.current_thread().name, statement.split(None, 1)[0]))

        dbapi_connection.set_trace_callback(trace)

    return seen


@pytest.fixture
def lock_holder(db_path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection on the file, outside any transaction."""
    holder = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    try:
        yield holder
    finally:
        holder.close()


async def test_an_uncontended_write_runs_on_the_callers_thread(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    seen = _threads_of_statements(store)
    try:
        await store.count_by_status()  # connects on the store thread
        del seen[:]
        await store.insert([make_job()])
        [claimed] = await store.claim(topics=["t"], now=T0, lease=LEASE, limit=5)
        done = attrs.evolve(claimed, status=JobStatus.COMPLETED, lock_token=None, locked_until=None)
        update = JobUpdate(
            job=done, expected_status=JobStatus.PROCESSING, expected_lock_token=claimed.lock_token
        )
        assert await store.update([update]) == [True]
    finally:
        await store.close()
    here = threading.current_thread().name
    assert [word for thread, word in seen if thread == here].count("COMMIT") == 3, seen
    assert {thread for thread, word in seen if word != "PRAGMA"} == {here}, seen


async def test_a_batch_of_renewals_is_one_transaction_on_the_callers_thread(
    db_path: Path,
) -> None:
    """Heartbeats are on the worker's path: a small uncontended batch of renewals takes
    no thread hop, and is one `BEGIN IMMEDIATE` ... `COMMIT` with an UPDATE per lease."""
    store = SQLiteStore(db_path)
    seen = _threads_of_statements(store)
    try:
        await store.insert([make_job() for _ in range(3)])
        claimed = await store.claim(topics=["t"], now=T0, lease=LEASE, limit=3)
        renewals = [
            transitions.update(
                job,
                transitions.renew(
                    job, token=str(job.lock_token), now=T0, lease=LEASE, new_token=uuid.uuid4().hex
                ),
            )
            for job in claimed
        ]
        del seen[:]
        assert list(await store.renew(renewals)) == [change.job for change in renewals]
    finally:
        await store.close()
    here = threading.current_thread().name
    on_loop = [word for thread, word in seen if thread == here and word != "PRAGMA"]
    assert on_loop == ["BEGIN", "UPDATE", "UPDATE", "UPDATE", "COMMIT"], seen


async def test_with_inline_writes_off_every_call_runs_on_the_store_thread(db_path: Path) -> None:
    store = SQLiteStore(db_path, inline_writes=False)
    seen = _threads_of_statements(store)
    try:
        await store.insert([make_job()])
        await store.claim(topics=["t"], now=T0, lease=LEASE, limit=5)
    finally:
        await store.close()
    assert seen
    assert {thread for thread, _ in seen} == {"jobs-sqlite"}


async def test_synchronous_full_keeps_writes_off_the_callers_thread(db_path: Path) -> None:
    """Each commit flushes the disk under FULL: never on the event loop."""
    store = SQLiteStore(db_path, synchronous="FULL")
    seen = _threads_of_statements(store)
    try:
        await store.insert([make_job()])
        await store.insert([make_job()])
    finally:
        await store.close()
    assert {thread for thread, _ in seen} == {"jobs-sqlite"}


async def test_a_batch_over_the_limit_runs_on_the_store_thread(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    seen = _threads_of_statements(store)
    try:
        await store.count_by_status()
        del seen[:]
        await store.insert([make_job() for _ in range(LOOP_ROWS + 1)])
        assert (await store.count_by_status())[JobStatus.PENDING] == LOOP_ROWS + 1
    finally:
        await store.close()
    inserts = {thread for thread, word in seen if word == "INSERT"}
    assert inserts == {"jobs-sqlite"}, seen


async def test_a_locked_file_sends_the_write_to_the_store_thread_without_blocking_the_loop(
    db_path: Path, lock_holder: sqlite3.Connection
) -> None:
    """Another process holds the write lock: the attempt on the loop fails at once (no
    busy wait there), and the store thread waits and writes the job exactly once."""
    store = SQLiteStore(db_path)
    seen = _threads_of_statements(store)
    try:
        await store.count_by_status()
        del seen[:]
        lock_holder.execute("BEGIN IMMEDIATE")
        job = make_job()
        try:
            insert = asyncio.create_task(store.insert([job]))
            # While the insert waits for the lock, this coroutine keeps running: the loop
            # was not held in SQLite's busy handler.
            while not any(thread == "jobs-sqlite" for thread, _ in seen):
                await asyncio.sleep(0.001)
            assert not insert.done()
        finally:
            lock_holder.execute("COMMIT")
        await insert
        assert await store.get(job.id) == job
        assert (await store.count_by_status())[JobStatus.PENDING] == 1
    finally:
        await store.close()
    here = threading.current_thread().name
    on_loop = [word for thread, word in seen if thread == here and word != "PRAGMA"]
    assert on_loop == ["BEGIN"], seen  # the refused attempt, nothing more
    on_thread = [word for thread, word in seen if thread == "jobs-sqlite" and word != "PRAGMA"]
    assert on_thread[:3] == ["BEGIN", "INSERT", "COMMIT"], seen


async def test_writes_on_the_loop_leave_wal_checkpoints_to_the_store_thread(
    db_path: Path,
) -> None:
    """The loop's connection never checkpoints (that flushes the disk); the store thread
    does, so the WAL is rewound instead of growing with every write."""
    store = SQLiteStore(db_path)
    seen = _threads_of_statements(store)
    wal = Path(f"{db_path}-wal")
    # Eight checkpoint intervals: the WAL then holds about one interval's pages (some
    # per insert), well under one page per insert in all.
    inserts = 8 * _CHECKPOINT_AFTER
    try:
        await store.count_by_status()  # connects on the store thread
        del seen[:]
        for _ in range(inserts):
            await store.insert([make_job()])
        # The checkpoints queued before the last interval have run (the writes after each
        # queued behind it).
        wal_pages = wal.stat().st_size / 4096
    finally:
        await store.close()
    # The writes made while a checkpoint runs go to the thread after it; the rest run here.
    here = [thread for thread, word in seen if word == "INSERT"].count(
        threading.current_thread().name
    )
    assert here > 0.9 * inserts, here
    # A WAL nobody checkpoints grows by a few pages per insert; a checkpointed one is
    # rewound and stays near the pages written between two checkpoints.
    assert wal_pages < inserts, wal_pages


class TestContractWithoutInlineWrites(JobStoreContract):
    """The port's contract on the store thread alone (the default runs it mostly inline)."""

    @pytest.fixture
    async def store(self, db_path: Path) -> Any:
        s = SQLiteStore(db_path, inline_writes=False)
        yield s
        await s.close()
