"""SQLite checks (RELIABILITY §4.5, §4.6, §4.7): every write transaction begins with
`BEGIN IMMEDIATE`, the deferred-upgrade trap is avoided, the claim uses its index,
8 processes may create the schema at once, and a graceful stop leaves nothing behind."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from jobs_core import Jobs, JobsConfig, JobStatus
from jobs_sqlite import SQLiteStore, create_engine
from jobs_sqlite._statements import claim as claim_statement
from tests.faults.checks import graceful_stop, race_schema_creation

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")


class TransactionLog:
    """Records, per connection, each transaction's BEGIN and the statements inside it.

    Traced by SQLite itself (`set_trace_callback` on every connection the engine opens),
    so it sees what the store runs through SQLAlchemy and on the raw cursor alike.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.open: dict[int, list[str]] = {}
        self.closed: list[list[str]] = []
        self.outside: list[str] = []
        event.listen(engine, "connect", self._traced)

    def _traced(self, dbapi_connection: sqlite3.Connection, record: Any) -> None:
        key = id(dbapi_connection)
        dbapi_connection.set_trace_callback(lambda statement: self._statement(key, statement))

    def _statement(self, key: int, statement: str) -> None:
        sql = " ".join(statement.split()).upper()
        if sql.startswith("BEGIN"):
            self.open[key] = [sql]
        elif sql.startswith(("COMMIT", "ROLLBACK", "END")):
            done = self.open.pop(key, None)
            if done is not None:
                self.closed.append(done)
        elif key in self.open:
            self.open[key].append(sql)
        else:
            self.outside.append(sql)

    def deferred_writes(self) -> list[list[str]]:
        """Transactions that began without IMMEDIATE and then wrote: the F7 trap."""
        return [
            t
            for t in self.closed
            if t[0] != "BEGIN IMMEDIATE" and any(s.startswith(_WRITES) for s in t[1:])
        ]


async def test_every_write_transaction_begins_immediate(tmp_path: Path) -> None:
    """Drive every store operation (and the worker, requeue, delete) with the connection
    instrumented: no write happens in a deferred transaction or outside a transaction."""
    store = SQLiteStore(tmp_path / "jobs.db")
    log = TransactionLog(store.engine)
    jobs = Jobs(store, config=JobsConfig(backoff=lambda n: timedelta(0)))
    calls = {"n": 0}

    def handler(job: object) -> None:
        calls["n"] += 1
        if calls["n"] % 2:
            raise RuntimeError("odd runs fail")

    jobs.register("t", handler)
    made = await jobs.enqueue_many("t", [{"n": n} for n in range(6)])
    await jobs.enqueue("other", None)
    while await jobs.run_once():
        pass
    await jobs.get(made[0].id)
    await jobs.list(status=JobStatus.FAILED)
    await jobs.stats()
    page = await jobs.list(status="failed")
    for failed in page.items[:1]:
        await jobs.requeue(failed.id)
    pending = await jobs.list(status="pending", topic="other")
    await jobs.delete(pending.items[0].id)
    await store.expired(now=jobs.clock.now(), limit=10)
    await jobs.aclose()

    writes = [t for t in log.closed if any(s.startswith(_WRITES) for s in t[1:])]
    assert len(writes) >= 5, "the instrumentation saw no writes"
    assert log.deferred_writes() == []
    assert [s for s in log.outside if s.startswith(_WRITES)] == []
    assert {t[0] for t in writes} == {"BEGIN IMMEDIATE"}


@pytest.mark.parametrize("how", ["store engine", "plain deferred"])
def test_read_then_write_waits_instead_of_failing(tmp_path: Path, how: str) -> None:
    """Another connection holds the write lock; ours reads, then writes. Through the
    store's engine (BEGIN IMMEDIATE) it waits in the busy handler and succeeds; the plain
    deferred transaction fails at once, which shows the test really sets the trap."""
    path = tmp_path / "jobs.db"
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode = WAL")
    setup.execute("CREATE TABLE t (n INTEGER)")
    setup.execute("INSERT INTO t VALUES (0)")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("UPDATE t SET n = n + 1")
    release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    began = time.monotonic()
    release.start()
    try:
        if how == "store engine":
            engine = create_engine(path, busy_timeout=timedelta(seconds=5))
            with engine.begin() as conn:
                n = conn.execute(sa.text("SELECT n FROM t")).scalar_one()
                conn.execute(sa.text("UPDATE t SET n = :n"), {"n": n + 10})
            engine.dispose()
            assert time.monotonic() - began >= 0.4  # it waited for the holder
            assert setup.execute("SELECT n FROM t").fetchone() == (11,)
        else:
            plain = sqlite3.connect(path, timeout=5, isolation_level=None)
            plain.execute("BEGIN")
            plain.execute("SELECT n FROM t").fetchone()
            release.join()
            with pytest.raises(sqlite3.OperationalError, match=r"locked|busy"):
                plain.execute("UPDATE t SET n = 99")
            plain.close()
    finally:
        release.join()
        holder.close()
        setup.close()


async def test_claim_query_uses_its_index(tmp_path: Path) -> None:
    """100k finished + 1k pending rows: the claim's plan searches an index, never scans."""
    store = SQLiteStore(tmp_path / "jobs.db")
    jobs = Jobs(store)
    await jobs.enqueue("t", None)  # creates the schema
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq"
                " WHERE n < 101000)"
                " INSERT INTO jobs (id, topic, payload, status, run_at, retries, max_retries,"
                " created, updated)"
                " SELECT printf('%032x', n), 't', 'null',"
                " CASE WHEN n <= 100000 THEN 'completed' ELSE 'pending' END,"
                " '2020-01-01T00:00:00.000000Z', 0, 3,"
                " '2020-01-01T00:00:00.000000Z', '2020-01-01T00:00:00.000000Z' FROM seq"
            )
        )
        conn.execute(sa.text("ANALYZE"))
    now = jobs.clock.now()
    claimed = await store.claim(topics=["t"], now=now, lease=timedelta(seconds=60), limit=10)
    assert len(claimed) == 10
    # The statement exactly as the store runs it: lease end, now, now, the topic, limit.
    parameters = ("2030-01-01T00:00:00.000000Z", "x", "2030-01-01T00:00:00.000000Z", "t", 10)
    with store.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        rows = raw.execute("EXPLAIN QUERY PLAN " + claim_statement(1), parameters)
        plan = [row[-1] for row in rows]
    await store.close()
    text = "\n".join(plan)
    print("SQLite claim plan:\n" + text)
    assert "INDEX" in text.upper() or "PRIMARY KEY" in text.upper(), text
    assert not any(
        line.strip().upper().startswith("SCAN") and "INDEX" not in line.upper() for line in plan
    ), text


@pytest.mark.fault
@pytest.mark.fault_sqlite
def test_eight_processes_create_the_schema_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    outputs = race_schema_creation(url)
    assert outputs == ["exit 0: ok"] * 8
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        assert conn.execute("SELECT count(*) FROM jobs_schema").fetchone() == (1,)


@pytest.mark.fault
@pytest.mark.fault_sqlite
async def test_graceful_stop_leaves_nothing_processing(tmp_path: Path) -> None:
    await graceful_stop(f"sqlite:///{tmp_path / 'jobs.db'}", tmp_path)
