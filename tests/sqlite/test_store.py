"""SQLiteStore beyond the port contract: URLs, schema, pragmas, wake-ups, bad input."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

import jobs_core
from jobs_core import (
    InvalidOptions,
    JobQuery,
    Jobs,
    JobStatus,
    StoreError,
    StoreUnavailable,
)
from jobs_core.testing.contract import LEASE, make_job
from jobs_sqlite import SCHEMA_VERSION, SQLiteStore
from jobs_sqlite._rows import format_time, parse_time

T0 = datetime(2030, 1, 1, tzinfo=UTC)


# -- opening by URL -------------------------------------------------------------------


async def test_open_store_finds_the_adapter_by_url_scheme(tmp_path: Path) -> None:
    """`open_store("sqlite:////abs/path")` goes through the entry point to this store."""
    target = tmp_path / "via-url.db"
    store = jobs_core.open_store(f"sqlite:///{target}")
    try:
        assert isinstance(store, SQLiteStore)
        assert store.path == str(target)
        job = make_job()
        await store.insert([job])
        assert await store.get(job.id) == job
    finally:
        await store.close()
    assert target.exists()
    assert "sqlite" in jobs_core.available_schemes()


def test_relative_and_memory_urls() -> None:
    """Three slashes: relative path; `sqlite://`: in memory; `?mode=ro`: read-only."""
    assert SQLiteStore.from_url("sqlite:///data/jobs.db").path == "data/jobs.db"
    assert SQLiteStore.from_url("sqlite+pysqlite:///jobs.db").path == "jobs.db"
    assert SQLiteStore.from_url("sqlite://").path == ":memory:"
    assert "read-only" in repr(SQLiteStore.from_url("sqlite:///jobs.db?mode=ro"))


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://host/jobs.db",
        "sqlite:///jobs.db?journal=delete",
        "postgresql:///x",
        "sqlite:///:memory:?mode=ro",
    ],
)
def test_bad_urls_are_refused_with_the_form_to_use(url: str) -> None:
    """Hosts, unknown options and other databases raise `InvalidOptions`."""
    with pytest.raises(InvalidOptions):
        SQLiteStore.from_url(url)


async def test_memory_store_works_for_one_store() -> None:
    """`sqlite://` keeps jobs in memory for the life of the store."""
    store = SQLiteStore.from_url("sqlite://")
    job = make_job()
    await store.insert([job])
    assert await store.get(job.id) == job
    await store.close()


# -- times --------------------------------------------------------------------------


def test_times_are_fixed_width_utc_text_that_sorts_as_time() -> None:
    """Every instant has the same width, so text order is time order; microseconds round-trip."""
    instants = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2030, 1, 1, tzinfo=UTC),
        datetime(2030, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(2030, 1, 1, 5, 0, tzinfo=timezone(timedelta(hours=2))),  # 03:00 UTC
        datetime(2030, 1, 1, 4, 0, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    texts = [format_time(t) for t in instants]
    assert {len(t) for t in texts} == {27}
    assert all(t.endswith("Z") for t in texts)
    assert sorted(texts) == [format_time(t) for t in sorted(instants)]
    for instant, text in zip(instants, texts, strict=True):
        back = parse_time(text)
        assert back == instant
        assert back.utcoffset() == timedelta(0)
    assert format_time(instants[4]) == "2030-01-01T03:00:00.000000Z"
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2030, 1, 1))


# -- schema and connection settings ------------------------------------------------


async def test_schema_is_created_once_with_its_version(db_path: Path) -> None:
    """Opening the same file again keeps one version row; the claim index exists."""
    for _ in range(3):
        store = SQLiteStore(db_path)
        await store.count_by_status()
        await store.close()
    with sqlite3.connect(db_path) as raw:
        rows = raw.execute("SELECT component, version FROM jobs_schema").fetchall()
        indexes = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        mode = raw.execute("PRAGMA journal_mode").fetchone()[0]
    assert rows == [("jobs", SCHEMA_VERSION)]
    assert "jobs_claim_idx" in indexes
    assert mode == "wal"


async def test_a_file_from_a_newer_release_is_refused(db_path: Path) -> None:
    """A schema version above ours is named in a `StoreError`, and nothing is changed."""
    store = SQLiteStore(db_path)
    await store.count_by_status()
    await store.close()
    with sqlite3.connect(db_path) as raw:
        raw.execute("UPDATE jobs_schema SET version = ?", (SCHEMA_VERSION + 1,))
    newer = SQLiteStore(db_path)
    with pytest.raises(
        StoreError,
        match=rf"version {SCHEMA_VERSION + 1}.*{db_path}|{db_path}.*version {SCHEMA_VERSION + 1}",
    ):
        await newer.count_by_status()
    await newer.close()


async def test_each_connection_gets_wal_busy_timeout_and_synchronous(store: SQLiteStore) -> None:
    """The pragmas are set on the store's connection."""
    await store.count_by_status()

    def pragmas() -> tuple[str, int, int]:
        with store.engine.connect() as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar_one()
            busy = conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
            sync = conn.exec_driver_sql("PRAGMA synchronous").scalar_one()
            conn.rollback()
        return mode, busy, sync

    mode, busy, sync = await asyncio.to_thread(pragmas)
    assert (mode, sync) == ("wal", 1)  # 1 = NORMAL
    assert busy >= 5000


# -- wake-ups -----------------------------------------------------------------------


async def test_watch_reports_own_inserts_and_requeues(store: SQLiteStore) -> None:
    """Inserting, and an update that makes a job pending again, call the watcher."""
    calls: list[str] = []
    watching = asyncio.create_task(store.watch(lambda: calls.append("wake")))
    await asyncio.sleep(0)
    job = make_job(max_retries=1)
    await store.insert([job])
    assert calls == ["wake"]
    (claimed,) = await store.claim(topics=["t"], now=T0, lease=LEASE, limit=1)
    assert calls == ["wake"]  # a claim makes nothing due
    import attrs

    from jobs_core import JobUpdate

    retry = attrs.evolve(claimed, status=JobStatus.PENDING, lock_token=None, locked_until=None)
    flags = await store.update(
        [
            JobUpdate(
                job=retry,
                expected_status=JobStatus.PROCESSING,
                expected_lock_token=claimed.lock_token,
            )
        ]
    )
    assert list(flags) == [True]
    assert calls == ["wake", "wake"]
    watching.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watching
    await store.insert([make_job()])
    assert calls == ["wake", "wake"]  # unregistered once cancelled


# -- bad input reaching the store ---------------------------------------------------


async def _corrupt(db_path: Path, column: str, value: object) -> str:
    store = SQLiteStore(db_path)
    job = make_job()
    await store.insert([job])
    await store.close()
    with sqlite3.connect(db_path) as raw:
        raw.execute("PRAGMA ignore_check_constraints = ON")
        raw.execute(f"UPDATE jobs SET {column} = ? WHERE id = ?", (value, job.id))
    return job.id


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("payload", "{not json"),
        ("status", "exploded"),
        ("run_at", "2030-01-01 00:00:00"),
        ("created", "yesterday"),
        ("locked_until", "2030-13-01T00:00:00.000000Z"),
    ],
)
async def test_a_corrupt_row_names_the_job_the_column_and_the_file(
    db_path: Path, column: str, value: str
) -> None:
    """Unreadable JSON, time or status raises `StoreError`, never a bare ValueError."""
    job_id = await _corrupt(db_path, column, value)
    store = SQLiteStore(db_path)
    try:
        with pytest.raises(StoreError) as caught:
            await store.get(job_id)
        message = str(caught.value)
        assert job_id in message
        assert column in message
        assert str(db_path) in message
        assert "corrupt" in message
        with pytest.raises(StoreError, match="corrupt"):
            await store.list(JobQuery())
    finally:
        await store.close()


async def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    """A text file where the database should be: `StoreError` naming file and problem."""
    target = tmp_path / "notes.txt"
    target.write_text("these are my notes, not a database\n" * 100)
    store = SQLiteStore(target)
    with pytest.raises(StoreError, match="not a SQLite database") as caught:
        await store.insert([make_job()])
    assert str(target) in str(caught.value)
    assert not isinstance(caught.value, StoreUnavailable)
    assert caught.value.__cause__ is not None
    await store.close()
    assert target.read_text().startswith("these are my notes")


async def test_a_read_only_database_refuses_writes_clearly(db_path: Path) -> None:
    """Opened read-only: reads work, writes raise `StoreError` saying it is read-only."""
    writer = SQLiteStore(db_path)
    job = make_job()
    await writer.insert([job])
    await writer.close()
    reader = jobs_core.open_store(f"sqlite:///{db_path}?mode=ro")
    try:
        assert await reader.get(job.id) == job
        with pytest.raises(StoreError, match="read-only") as caught:
            await reader.insert([make_job()])
        assert str(db_path) in str(caught.value)
        with pytest.raises(StoreError, match="read-only"):
            await reader.claim(topics=["t"], now=T0, lease=LEASE, limit=1)
    finally:
        await reader.close()


async def test_a_read_only_file_without_schema(db_path: Path) -> None:
    """Read-only on a file with no jobs schema says so instead of "no such table"."""
    sqlite3.connect(db_path).close()
    store = SQLiteStore(db_path, read_only=True)
    with pytest.raises(StoreError, match=r"no jobs schema.*read-only"):
        await store.count_by_status()
    await store.close()


async def test_a_missing_folder(tmp_path: Path) -> None:
    """A path whose folder does not exist cannot be opened: `StoreError` says so."""
    store = SQLiteStore(tmp_path / "no" / "such" / "jobs.db")
    with pytest.raises(StoreError, match="cannot be opened") as caught:
        await store.count_by_status()
    assert "no/such/jobs.db" in str(caught.value)
    await store.close()


async def test_busy_past_the_timeout_is_store_unavailable(db_path: Path) -> None:
    """Another connection holding the write lock past the busy timeout: retry later."""
    store = SQLiteStore(db_path, busy_timeout=timedelta(milliseconds=200))
    await store.count_by_status()
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match="locked") as caught:
            await store.insert([make_job()])
        assert str(db_path) in str(caught.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    await store.insert([make_job()])  # and it recovers by itself
    assert (await store.count_by_status())[JobStatus.PENDING] == 1
    await store.close()


async def test_duplicate_ids_fail_the_batch_with_a_store_error(store: SQLiteStore) -> None:
    """A constraint violation is translated, and nothing of the batch is stored."""
    job = make_job()
    await store.insert([job])
    with pytest.raises(StoreError, match="constraint"):
        await store.insert([make_job(), job])
    assert (await store.list(JobQuery())).total == 1


async def test_a_closed_store_says_so(db_path: Path) -> None:
    """Calls after `close()` raise `StoreError` instead of reopening silently."""
    store = SQLiteStore(db_path)
    await store.count_by_status()
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        await store.get("x")


# -- the service on top -------------------------------------------------------------


async def test_jobs_service_runs_on_the_store(store: SQLiteStore) -> None:
    """End to end through `Jobs.run_once`: enqueue, run, complete; stats agree."""
    jobs = Jobs(store)
    seen: list[object] = []
    jobs.register("greet", lambda job: seen.append(job.payload))
    queued = await jobs.enqueue_many("greet", [{"n": i} for i in range(5)])
    assert await jobs.run_once() == 5
    assert sorted(p["n"] for p in seen) == list(range(5))  # type: ignore[index]
    stats = await jobs.stats()
    assert (stats.completed, stats.total, stats.success_rate) == (5, 5, 1.0)
    for job in queued:
        assert (await jobs.get(job.id)).status is JobStatus.COMPLETED


async def test_a_foreign_jobs_table_is_not_taken_over(db_path: Path) -> None:
    """An application's own `jobs` table in the file is reported, not written into."""
    with sqlite3.connect(db_path) as raw:
        raw.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, title TEXT)")
    store = SQLiteStore(db_path)
    with pytest.raises(StoreError, match="not a jobs table") as caught:
        await store.count_by_status()
    assert str(db_path) in str(caught.value)
    await store.close()
    with sqlite3.connect(db_path) as raw:
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"jobs"}  # the failed creation was rolled back whole
