"""Transactions: every write begins with BEGIN IMMEDIATE (RELIABILITY F7, section 4.5),
and callers can enqueue inside their own transaction."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from sqlalchemy import Table, event, insert, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import ConnectionPoolEntry

from jobs_core import Job, JobQuery, Jobs, JobStatus, JobUpdate, StoreError
from jobs_core.testing.contract import LEASE, make_job
from jobs_sqlite import SQLiteStore, create_engine, create_schema, jobs_table
from jobs_sqlite._engine import read_transaction, write_transaction

T0 = datetime(2030, 1, 1, tzinfo=UTC)
_WRITES = ("INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "REPLACE")


def _transactions(trace: list[str]) -> list[list[str]]:
    """Split traced SQL into transactions; statements outside one form their own."""
    groups: list[list[str]] = []
    current: list[str] | None = None
    for statement in (s.strip() for s in trace):
        word = statement.split(None, 1)[0].upper() if statement else ""
        if word == "BEGIN":
            current = [statement]
            groups.append(current)
        elif word in ("COMMIT", "ROLLBACK", "END") and current is not None:
            current.append(statement)
            current = None
        elif current is not None:
            current.append(statement)
        else:
            groups.append([statement])
    return groups


async def test_every_write_transaction_begins_immediate(db_path: Path) -> None:
    """Trace the SQL SQLite runs for every port call: no write outside `BEGIN IMMEDIATE`."""
    store = SQLiteStore(db_path)
    trace: list[str] = []

    @event.listens_for(store.engine, "connect")
    def traced(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        dbapi_connection.set_trace_callback(trace.append)

    jobs = [make_job() for _ in range(4)]
    await store.insert(jobs)  # also connects and creates the schema
    await store.get(jobs[0].id)
    await store.list(JobQuery(status=JobStatus.PENDING))
    await store.count_by_status()
    claimed = await store.claim(topics=["t"], now=T0, lease=LEASE, limit=2)
    done = [
        JobUpdate(
            job=attrs.evolve(j, status=JobStatus.COMPLETED, lock_token=None, locked_until=None),
            expected_status=JobStatus.PROCESSING,
            expected_lock_token=j.lock_token,
        )
        for j in claimed
    ]
    await store.update(done)
    await store.expired(now=T0 + LEASE * 2, limit=10)
    await store.delete(jobs[3].id, expected_status=JobStatus.PENDING)
    await store.close()

    groups = _transactions(trace)
    writes = [g for g in groups if any(s.split(None, 1)[0].upper() in _WRITES for s in g)]
    assert len(writes) >= 5, groups  # schema, insert, claim, update, delete
    for group in writes:
        assert group[0].upper() == "BEGIN IMMEDIATE", group
    reads = [g for g in groups if g not in writes and g[0].upper().startswith("BEGIN")]
    assert reads, "reads run in (deferred) snapshot transactions too"
    create = next(g for g in writes if any("CREATE TABLE" in s for s in g))
    assert any("jobs_schema" in s for s in create), "schema and its version in one transaction"


def _holding_write_lock(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO marks VALUES ('holder')")
    return holder


def _marks_table(path: Path) -> None:
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA journal_mode = WAL")
        raw.execute("CREATE TABLE marks (who TEXT)")


def test_read_then_write_waits_for_the_lock_and_succeeds(db_path: Path) -> None:
    """Section 4.5 regression: the helper's read-then-write waits in the busy handler."""
    _marks_table(db_path)
    engine = create_engine(db_path, busy_timeout=timedelta(seconds=10))
    holder = _holding_write_lock(db_path)
    outcome: list[object] = []

    def read_then_write() -> None:
        try:
            with engine.connect() as conn, write_transaction(conn):
                before = conn.execute(text("SELECT count(*) FROM marks")).scalar_one()
                conn.execute(text("INSERT INTO marks VALUES ('writer')"))
                outcome.append(before)
        except Exception as exc:
            outcome.append(exc)

    writer = threading.Thread(target=read_then_write)
    writer.start()
    writer.join(timeout=0.5)
    assert writer.is_alive(), f"did not wait for the lock: {outcome}"
    holder.execute("COMMIT")
    writer.join(timeout=10)
    assert outcome == [1], outcome  # it waited, then saw the holder's committed row
    with sqlite3.connect(db_path) as raw:
        assert [r[0] for r in raw.execute("SELECT who FROM marks")] == ["holder", "writer"]
    holder.close()
    engine.dispose()


def test_a_deferred_read_then_write_fails_at_once(db_path: Path) -> None:
    """The trap the helper avoids: a deferred transaction's upgrade gets SQLITE_BUSY with
    no waiting, although the busy timeout is 10 s (python/cpython#124510)."""
    _marks_table(db_path)
    engine = create_engine(db_path, busy_timeout=timedelta(seconds=10))
    with engine.connect() as conn:
        with read_transaction(conn):
            conn.execute(text("SELECT count(*) FROM marks")).scalar_one()
            holder = _holding_write_lock(db_path)
            started = time.monotonic()
            with pytest.raises(sa_exc.OperationalError, match="locked"):
                conn.execute(text("INSERT INTO marks VALUES ('deferred')"))
            assert time.monotonic() - started < 2
        holder.execute("ROLLBACK")
        holder.close()
    engine.dispose()


# -- transactional enqueue ----------------------------------------------------------


def _orders_table() -> Table:
    from sqlalchemy import Column, Integer, MetaData, Text

    return Table(
        "orders", MetaData(), Column("id", Integer, primary_key=True), Column("item", Text)
    )


async def test_enqueue_inside_the_callers_transaction(db_path: Path) -> None:
    """The job exists if and only if the caller's own transaction commits."""
    orders = _orders_table()
    engine = create_engine(db_path)
    with engine.begin() as conn:
        create_schema(conn)
        orders.create(conn)
    jobs = Jobs(SQLiteStore(db_path))
    kept = jobs.prepare("ship", {"order": 1})
    dropped = jobs.prepare("ship", {"order": 2})

    def place_order(order: int, item: str, job: Job, *, paid: bool) -> None:
        with engine.begin() as conn:
            conn.execute(insert(orders).values(id=order, item=item))
            SQLiteStore.insert_with(conn, [job])
            if not paid:
                raise RuntimeError("payment declined")

    place_order(1, "book", kept, paid=True)
    with pytest.raises(RuntimeError, match="payment declined"):
        place_order(2, "lamp", dropped, paid=False)

    with engine.connect() as conn:
        assert conn.execute(select(orders.c.id)).scalars().all() == [1]
        assert conn.execute(select(jobs_table.c.id)).scalars().all() == [kept.id]
        conn.rollback()
    assert await jobs.get(kept.id) == kept

    ran: list[object] = []
    jobs.register("ship", lambda job: ran.append(job.payload))
    assert await jobs.run_once() == 1
    assert ran == [{"order": 1}]
    await jobs.aclose()
    engine.dispose()


def test_insert_with_needs_the_schema(db_path: Path) -> None:
    """Without the tables the error says how to create them."""
    engine = create_engine(db_path)
    with pytest.raises(StoreError, match="create_schema"), engine.begin() as conn:
        SQLiteStore.insert_with(conn, [make_job()])
    engine.dispose()


class _AsyncConnectionLike:
    """Stands in for `sqlalchemy.ext.asyncio.AsyncConnection` (aiosqlite is not installed):
    a SQLite dialect, and an `execute` that is a coroutine, so an unchecked call would
    build the INSERT and drop it unawaited."""

    def __init__(self, engine: Any) -> None:
        self.dialect = engine.dialect
        self.engine = engine
        self.calls = 0

    async def execute(self, *args: object, **kwargs: object) -> None:
        self.calls += 1


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_insert_with_refuses_anything_but_a_sync_connection(db_path: Path) -> None:
    """An async connection, an engine, a raw sqlite3 connection or None: `TypeError`
    naming what it got and what it needs, before anything runs (issue 14, defect 7)."""
    engine = create_engine(db_path)
    with engine.begin() as conn:
        create_schema(conn)
    fake_async = _AsyncConnectionLike(engine)
    raw = sqlite3.connect(db_path)
    try:
        for given, named in (
            (fake_async, "_AsyncConnectionLike"),
            (engine, "Engine"),
            (raw, "sqlite3.Connection"),
            (None, "None"),
        ):
            with pytest.raises(TypeError, match=r"sync sqlalchemy\.engine\.Connection") as caught:
                SQLiteStore.insert_with(given, [make_job()])  # type: ignore[arg-type]
            assert named in str(caught.value)
        assert fake_async.calls == 0
    finally:
        raw.close()
    with engine.connect() as conn:
        assert conn.execute(select(jobs_table.c.id)).all() == []
        conn.rollback()
    engine.dispose()
