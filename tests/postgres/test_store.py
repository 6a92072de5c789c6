"""PostgresStore beyond the contract: URLs, schema, errors, NOTIFY and transactional enqueue."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import attrs
import pytest
import sqlalchemy as sa

from jobs_core import (
    JOB_FIELDS,
    InvalidOptions,
    JobNotFound,
    Jobs,
    JobsConfig,
    JobStatus,
    JobStore,
    JobUpdate,
    StoreUnavailable,
    open_store,
)
from jobs_core import _transitions as transitions
from jobs_postgres import SCHEMA_VERSION, PostgresStore
from jobs_postgres import _store as store_module
from jobs_postgres._schema import Schema
from jobs_postgres._url import parse_url

from .conftest import fresh_table


def test_url_is_split_into_driver_urls_and_options() -> None:
    """Our query options are removed; the driver is named for SQLAlchemy only."""
    parsed = parse_url("postgres://u:p@h:6543/db?table=q&schema=s&pool_size=3&sslmode=disable")
    assert parsed.sqlalchemy_url == "postgresql+asyncpg://u:p@h:6543/db?sslmode=disable"
    assert parsed.libpq_url == "postgresql://u:p@h:6543/db?sslmode=disable"
    assert (parsed.table, parsed.schema, parsed.pool_size) == ("q", "s", 3)
    assert parse_url("postgresql+psycopg://h/db").driver == "psycopg"


@pytest.mark.parametrize(
    "url",
    [
        "mysql://h/db",
        "postgresql+pg8000://h/db",
        "postgresql://h/db?table=Jobs",
        "postgresql://h/db?table=jobs;drop",
        "postgresql://h/db?schema=1x",
        "postgresql://h/db?pool_size=0",
        "postgresql://h/db?pool_timeout=soon",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    """Unknown drivers and names that would need quoting raise `InvalidOptions`."""
    with pytest.raises(InvalidOptions):
        parse_url(url)


def test_open_store_finds_postgres_store_by_scheme(pg_url: str) -> None:
    """Both `postgresql://` and `postgres://` resolve through the entry point."""
    for url in (pg_url, pg_url.replace("postgresql://", "postgres://", 1)):
        store = open_store(f"{url}?table=via_entry_point")
        assert isinstance(store, PostgresStore)
        assert isinstance(store, JobStore)
        assert store.table.name == "via_entry_point"


async def test_table_in_its_own_schema(pg_url: str) -> None:
    """`schema=` puts the table (and its version rows) in a schema of its own."""
    store = PostgresStore(f"{pg_url}?schema=queue_{fresh_table()[5:13]}&table=work")
    jobs = Jobs(store)
    job = await jobs.enqueue("t", {"a": 1})
    assert await store.get(job.id) == job
    schema = store.table.schema
    async with store.engine.connect() as conn:
        version = await conn.scalar(
            sa.text(f"SELECT max(version) FROM {schema}.work_schema_version")
        )
    assert version == SCHEMA_VERSION
    await store.close()


async def test_malformed_ids_are_not_found(pg_store: PostgresStore) -> None:
    """Non-canonical ids never reach PostgreSQL's lenient uuid parser."""
    job = await Jobs(pg_store).enqueue("t", {})
    for bad in (job.id.upper(), job.id.replace("-", ""), "{" + job.id + "}", "x" * 10_000):
        with pytest.raises(JobNotFound):
            await pg_store.get(bad)
        assert await pg_store.delete(bad, expected_status=JobStatus.PENDING) is False
    assert await pg_store.get(job.id) == job


async def test_unreachable_server_raises_store_unavailable() -> None:
    """A refused connection is `StoreUnavailable` (retry later), with the cause kept."""
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/nowhere")
    with pytest.raises(StoreUnavailable) as caught:
        await store.count_by_status()
    assert caught.value.__cause__ is not None
    await store.close()


async def test_warns_when_server_clock_differs(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A host clock 5 s off the server's is reported once, at start."""

    class Skewed(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Skewed:
            real = datetime.now(tz)
            return cls.fromtimestamp(real.timestamp() + 5, tz)

    monkeypatch.setattr(store_module, "datetime", Skewed)
    store = PostgresStore(pg_url, table=fresh_table())
    with caplog.at_level(logging.WARNING, logger="jobs_postgres"):
        await store.count_by_status()
    await store.close()
    assert any("clock skew" in record.getMessage() for record in caplog.records)


async def test_transactional_enqueue_commits_and_rolls_back_with_the_caller(
    pg_store: PostgresStore,
) -> None:
    """A job enqueued inside the caller's transaction exists iff that transaction commits."""
    jobs = Jobs(pg_store)
    engine = pg_store.engine
    kept, dropped = jobs.prepare("t", {"order": 1}), jobs.prepare("t", {"order": 2})
    async with engine.begin() as conn:
        await pg_store.insert_with(conn, [kept])
    async with engine.connect() as conn:
        transaction = await conn.begin()
        await pg_store.insert_with(conn, [dropped])
        await transaction.rollback()  # the caller's own work failed
    assert await pg_store.get(kept.id) == kept
    with pytest.raises(JobNotFound):
        await pg_store.get(dropped.id)


@pytest.fixture
async def listener(pg_url: str, pg_store: PostgresStore) -> AsyncIterator[list[str]]:
    """Payloads of notifications on the store's channel, as a plain LISTEN client sees them."""
    await pg_store.count_by_status()
    received: list[str] = []
    conn = await asyncpg.connect(pg_url)
    await conn.add_listener(pg_store.channel, lambda *args: received.append(args[3]))
    yield received
    await conn.close()


async def _until(predicate: Any, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_notifications_are_small_and_sent_on_commit(
    pg_store: PostgresStore, listener: list[str]
) -> None:
    """A 1 MiB payload and 1 000 jobs in one transaction both notify with just the topic."""
    jobs = Jobs(pg_store)
    await jobs.enqueue("big", {"blob": "x" * (1024 * 1024 - 20)})
    await jobs.enqueue_many("many", [{"i": i} for i in range(1000)])
    await _until(lambda: len(listener) >= 2)
    assert listener == ["big", "many"]
    assert all(len(payload.encode()) <= 64 for payload in listener)
    async with pg_store.engine.begin() as conn:  # nothing is heard before the commit
        await pg_store.insert_with(conn, [jobs.prepare("late", {})])
        await asyncio.sleep(0.1)
        assert "late" not in listener
    await _until(lambda: "late" in listener)


async def test_a_failed_attempt_due_again_notifies(
    pg_store: PostgresStore, listener: list[str]
) -> None:
    """Writes that make a job pending again (retry, release, requeue) wake listeners."""
    jobs = Jobs(pg_store)
    job = await jobs.enqueue("first", {})
    await _until(lambda: listener == ["first"])
    now = datetime.now(UTC)
    (claimed,) = await pg_store.claim(
        topics=["first"], now=now, lease=timedelta(seconds=5), limit=1
    )
    released = JobUpdate(
        job=attrs.evolve(
            claimed, status=JobStatus.PENDING, locked_until=None, lock_token=None, updated=now
        ),
        expected_status=JobStatus.PROCESSING,
        expected_lock_token=claimed.lock_token,
    )
    assert list(await pg_store.update([released])) == [True]
    await _until(lambda: listener == ["first", "first"])
    assert (await pg_store.get(job.id)).status is JobStatus.PENDING


async def _listener_pids(conn: asyncpg.Connection) -> list[int]:
    rows = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'jobs_postgres listener' AND query ILIKE 'LISTEN%'"
    )
    return [row["pid"] for row in rows]


async def test_listener_killed_is_re_established_and_still_wakes_the_worker(
    pg_url: str, table: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With a 30 s poll, a job enqueued right after the LISTEN backend is killed starts in < 1 s.

    Repeated five times; another process (here: another store) does the enqueue.
    """
    caplog.set_level(logging.INFO, logger="jobs_postgres.listen")
    worker_store = PostgresStore(pg_url, table=table)
    other = PostgresStore(pg_url, table=table)
    jobs = Jobs(worker_store, config=JobsConfig(poll_interval=timedelta(seconds=30)))
    maker = Jobs(other)
    seen: asyncio.Queue[str] = asyncio.Queue()

    @jobs.handler("t")
    async def record(job: Any) -> None:
        seen.put_nowait(job.id)

    admin = await asyncpg.connect(pg_url)
    await worker_store.count_by_status()
    await jobs.start()
    try:
        for _ in range(5):
            async with asyncio.timeout(10):
                while not (pids := await _listener_pids(admin)):
                    await asyncio.sleep(0.02)
            await _idle(jobs)
            await admin.execute("SELECT pg_terminate_backend($1)", pids[0])
            job = await maker.enqueue("t", {})
            async with asyncio.timeout(1.0):
                assert await seen.get() == job.id
            async with asyncio.timeout(10):  # the old backend is gone, a new one listens
                while (now := await _listener_pids(admin)) == pids or not now:
                    await asyncio.sleep(0.02)
    finally:
        await jobs.aclose()
        await other.close()
        await admin.close()
    assert any("re-established" in r.getMessage() for r in caplog.records)


async def _idle(jobs: Jobs) -> None:
    """Give the worker a moment to finish its previous job and wait on its poll timer."""
    await asyncio.sleep(0.1)


async def test_claim_plan_uses_the_pending_index(pg_store: PostgresStore, pg_url: str) -> None:
    """On 100 k finished + 1 k pending rows the claim reads the partial index.

    Checked on the generic plan of the prepared statement (what a driver's statement
    cache ends up running), where a bound `status` parameter could not use the index.
    """
    await pg_store.count_by_status()
    name = pg_store.table.name
    claim_sql = pg_store._sql.claim
    now = f"'{datetime.now(UTC).isoformat()}'"
    args = ", ".join((now, "'{t}'", "10", now))  # $1 now, $2 topics, $3 limit, $4 until
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            f"INSERT INTO {name} SELECT gen_random_uuid(), 't', '{{}}'::jsonb,"
            " CASE WHEN i % 100 = 0 THEN 'pending' ELSE 'completed' END, now(), NULL, NULL,"
            " 0, 3, NULL, now(), now() FROM generate_series(1, 101000) AS i"
        )
        await conn.execute(f"ANALYZE {name}")
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE claim AS {claim_sql}")
        rows = await conn.fetch(f"EXPLAIN EXECUTE claim({args})")
    finally:
        await conn.close()
    plan = "\n".join(row[0] for row in rows)
    assert f"{name}_pending_topic_idx" in plan, plan
    assert "Seq Scan" not in plan, plan


class _DriverError(Exception):
    """Stands in for a driver's error class (asyncpg and psycopg carry `sqlstate`)."""

    __module__ = "asyncpg.exceptions"

    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (_DriverError("57P01"), True),  # admin shutdown (terminated backend)
        (_DriverError("57P03"), True),  # cannot connect now (starting up)
        (_DriverError("08006"), True),  # connection failure
        (_DriverError("53300"), True),  # too many connections
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (_DriverError("23505"), False),  # unique violation
        (_DriverError("42P01"), False),  # undefined table
        (sa.exc.DBAPIError("x", None, _DriverError("57P01")), True),
        (sa.exc.DBAPIError("x", None, _DriverError("22P05")), False),
        (sa.exc.OperationalError("x", None, _DriverError(None)), True),
        (sa.exc.TimeoutError("pool"), True),
    ],
)
def test_errors_are_sorted_into_unavailable_or_not(error: Exception, unavailable: bool) -> None:
    """Connection-level failures are `StoreUnavailable`; what the server refused is not."""
    from jobs_core import StoreError
    from jobs_postgres._errors import translated

    with pytest.raises(StoreError) as caught, translated("testing"):
        raise error
    assert isinstance(caught.value, StoreUnavailable) is unavailable
    assert caught.value.__cause__ is error


async def test_a_job_named_twice_in_one_batch_is_applied_in_order(
    pg_store: PostgresStore,
) -> None:
    """The second write to the same job sees the first, as on every other store."""
    job = await Jobs(pg_store).enqueue("t", {})
    now = datetime.now(UTC)
    (claimed,) = await pg_store.claim(topics=["t"], now=now, lease=timedelta(seconds=9), limit=1)
    done = attrs.evolve(
        claimed, status=JobStatus.COMPLETED, locked_until=None, lock_token=None, updated=now
    )
    write = JobUpdate(
        job=done, expected_status=JobStatus.PROCESSING, expected_lock_token=claimed.lock_token
    )
    assert list(await pg_store.update([write, write])) == [True, False]
    assert await pg_store.get(job.id) == done


async def test_busy_hot_pool_times_out_as_store_unavailable(pg_url: str) -> None:
    """With every hot-path connection taken, an enqueue waits `pool_timeout`, then fails
    as `StoreUnavailable` (retry later) instead of waiting forever; it works once one is
    free again."""
    store = PostgresStore(f"{pg_url}?pool_size=1&pool_timeout=0.2", table=fresh_table())
    jobs = Jobs(store)
    await jobs.enqueue("t", {"n": 0})  # creates the table and the pool
    hot = store._pool
    assert hot is not None
    try:
        async with hot.connection():
            began = asyncio.get_running_loop().time()
            with pytest.raises(StoreUnavailable):
                await jobs.enqueue("t", {"n": 1})
            assert asyncio.get_running_loop().time() - began >= 0.2
        await jobs.enqueue("t", {"n": 2})
        assert (await jobs.stats()).pending == 2
    finally:
        await store.close()


async def test_hot_calls_are_one_statement_each(pg_url: str) -> None:
    """Enqueue, claim, the lease renewal and the guarded update each reach the server as
    one statement: no BEGIN, COMMIT, separate NOTIFY or lock query on the hot path."""
    store = PostgresStore(f"{pg_url}?pool_size=1", table=fresh_table())
    jobs = Jobs(store)
    try:
        await jobs.enqueue("t", {})  # creates the table and the pool's one connection
        hot = store._pool
        assert hot is not None
        sent: list[str] = []
        async with hot.connection() as conn:
            conn.add_query_logger(lambda record: sent.append(record.query))
        job = await jobs.enqueue("t", {"n": 1})
        await jobs.enqueue_many("t", [{"n": 2}, {"n": 3}])
        now = datetime.now(UTC)
        leased = await store.claim(topics=["t"], now=now, lease=timedelta(minutes=1), limit=2)
        renewals = [
            transitions.update(
                c,
                transitions.renew(
                    c,
                    token=str(c.lock_token),
                    now=now,
                    lease=timedelta(minutes=1),
                    new_token=uuid.uuid4().hex,
                ),
            )
            for c in leased
        ]
        claimed = [renewed for renewed in await store.renew(renewals) if renewed is not None]
        assert claimed == [change.job for change in renewals]
        done = [
            attrs.evolve(c, status=JobStatus.COMPLETED, locked_until=None, lock_token=None)
            for c in claimed
        ]
        applied = await store.update(
            [
                JobUpdate(job=d, expected_status=c.status, expected_lock_token=c.lock_token)
                for d, c in zip(done, claimed, strict=True)
            ]
        )
        assert applied == [True, True]
        await asyncio.sleep(0)  # asyncpg hands records to query loggers via call_soon
        # asyncpg looks up array types once per connection (its own catalog queries).
        sent = [q for q in sent if "pg_catalog" not in q and "'jit'" not in q]
        assert sent == [
            store._sql.insert_one,
            store._sql.insert,
            store._sql.claim,
            store._sql.renew,
            store._sql.update,
        ]
        assert job.id in {c.id for c in claimed}
    finally:
        await store.close()


def test_the_table_has_one_column_per_job_field_in_order() -> None:
    """The hot statements return rows positionally in `JOB_FIELDS` order and name the
    columns after the fields; the table declares exactly those, in that order."""
    table = Schema("jobs").jobs
    assert tuple(column.name for column in table.columns) == JOB_FIELDS
