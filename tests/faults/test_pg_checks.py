"""PostgreSQL checks (RELIABILITY §4.6, §4.7): no deadlocks under a mixed load, the claim
uses its partial index, 8 processes may create the schema at once, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import psycopg
import pytest
import sqlalchemy as sa
from psycopg import errors

from jobs_core import EnqueueOptions, Job, Jobs, JobsConfig, JobsError
from jobs_postgres import SCHEMA_VERSION, PostgresStore
from tests.faults import pg
from tests.faults.checks import graceful_stop, race_schema_creation
from tests.faults.fleet import publish, seed
from tests.faults.ledger import all_jobs, counters_consistent
from tests.pg_admin import admin_connect


@pytest.fixture
def db_url() -> Iterator[str]:
    with pg.fresh_database() as url:
        yield url


def _deadlocks(url: str) -> int:
    database = url.rsplit("/", 1)[-1]
    with admin_connect() as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = %s", (database,)
        ).fetchone()
    assert row is not None
    return int(str(row[0]))


@pytest.mark.fault
@pytest.mark.fault_postgres
@pytest.mark.timeout(300)
async def test_no_deadlocks_under_mixed_load(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """8 workers x batch 10, their reapers, lost leases to rescue, and requeue/delete at
    20/s on random ids, for 60 s: `pg_stat_database.deadlocks` does not move."""
    caplog.set_level(logging.WARNING)
    rng = random.Random(seed())
    config = JobsConfig(
        lock_duration=timedelta(seconds=1),
        poll_interval=timedelta(seconds=0.2),
        batch_size=10,
        worker_pool_size=10,
        backoff=lambda n: timedelta(milliseconds=200),
    )
    workers = [Jobs(PostgresStore(db_url), config=config) for _ in range(8)]
    api = Jobs(PostgresStore(db_url), config=config)

    async def handler(job: Job) -> None:
        await asyncio.sleep(rng.uniform(0, 0.02))
        if rng.random() < 0.3:
            raise RuntimeError("planned failure")

    for w in workers:
        w.register("mixed", handler)
    ids: list[str] = []
    ids += [j.id for j in await api.enqueue_many("mixed", [{"n": n} for n in range(500)])]
    before = _deadlocks(db_url)
    for w in workers:
        await w.start()
    ops = {"requeue": 0, "delete": 0, "refused": 0, "abandoned_claims": 0}
    until = time.monotonic() + 60
    try:
        while time.monotonic() < until:
            made = await api.enqueue_many(
                "mixed", [{}] * 10, EnqueueOptions(max_retries=rng.choice([0, 1]))
            )
            ids += [j.id for j in made]
            for _ in range(4):  # 20 requeue/delete per second
                target = rng.choice(ids)
                try:
                    if rng.random() < 0.5:
                        await api.requeue(target)
                        ops["requeue"] += 1
                    else:
                        await api.delete(target)
                        ops["delete"] += 1
                except JobsError:
                    ops["refused"] += 1
            # a worker that dies after claiming: its leases expire and get rescued
            lost = await api.store.claim(
                topics=["mixed"], now=api.clock.now(), lease=config.lease, limit=2
            )
            ops["abandoned_claims"] += len(lost)
            await asyncio.sleep(0.2)
    finally:
        for w in workers:
            await w.aclose()
    await asyncio.sleep(2)  # statistics are flushed at most once a second
    after = _deadlocks(db_url)
    stats = await api.stats()
    inconsistent = counters_consistent(await all_jobs(api.store), stats)
    await api.aclose()
    logged = [r.getMessage() for r in caplog.records if "deadlock" in r.getMessage().lower()]
    publish(
        "pg-deadlocks",
        {
            "deadlocks_delta": after - before,
            "jobs": stats.total,
            **ops,
            "deadlock_log_lines": len(logged),
            "api_ops_per_s": (ops["requeue"] + ops["delete"] + ops["refused"]) / 60,
        },
    )
    assert after - before == 0
    assert logged == []
    assert inconsistent == []  # I6 at the end of the run


async def test_claim_query_uses_the_partial_index(db_url: str) -> None:
    """100k completed + 1k pending rows: EXPLAIN of the claim the store really sends
    reads the `status = 'pending'` partial index, no sequential scan."""
    store = PostgresStore(db_url, table="plan_check")
    jobs = Jobs(store)
    await jobs.enqueue("t", None)
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO plan_check (id, topic, payload, status, run_at, retries,"
                " max_retries, created, updated)"
                " SELECT gen_random_uuid(), 't', 'null',"
                " CASE WHEN n <= 100000 THEN 'completed' ELSE 'pending' END,"
                " now() - interval '1 day', 0, 3, now(), now()"
                " FROM generate_series(1, 101000) AS n"
            )
        )
    async with store.engine.connect() as conn:
        await conn.execute(sa.text("COMMIT"))
        await conn.execute(sa.text("ANALYZE plan_check"))
    now = jobs.clock.now()
    claimed = await store.claim(topics=["t"], now=now, lease=timedelta(seconds=60), limit=10)
    assert len(claimed) == 10
    conn = await asyncpg.connect(db_url)
    try:  # the statement exactly as the store prepares it, with the same parameters
        rows = await conn.fetch(
            "EXPLAIN " + store._sql.claim, now, ["t"], 10, now + timedelta(seconds=60)
        )
    finally:
        await conn.close()
    plan = "\n".join(str(r[0]) for r in rows)
    await jobs.aclose()
    print("PostgreSQL claim plan:\n" + plan)
    assert "plan_check_pending_topic_idx" in plan, plan
    assert "Seq Scan" not in plan, plan


@pytest.mark.fault
@pytest.mark.fault_postgres
def test_eight_processes_create_the_schema_at_once(db_url: str) -> None:
    outputs = race_schema_creation(db_url)
    assert outputs == ["exit 0: ok"] * 8
    with admin_connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM jobs_schema_version").fetchone()
    assert row == (SCHEMA_VERSION,)  # one row per migration step


@pytest.mark.fault
@pytest.mark.fault_postgres
async def test_graceful_stop_leaves_nothing_processing(db_url: str, tmp_path: Path) -> None:
    await graceful_stop(db_url, tmp_path)


def test_the_deadlock_counter_sees_a_real_deadlock(db_url: str) -> None:
    """The measurement itself: two transactions locking two rows in opposite order make
    PostgreSQL detect a deadlock, and `pg_stat_database.deadlocks` moves by one."""
    with admin_connect(db_url) as setup:
        setup.execute("CREATE TABLE pair (id int PRIMARY KEY)")
        setup.execute("INSERT INTO pair VALUES (1), (2)")
    before = _deadlocks(db_url)
    a = psycopg.connect(db_url)
    b = psycopg.connect(db_url)
    try:
        a.execute("SELECT * FROM pair WHERE id = 1 FOR UPDATE")
        b.execute("SELECT * FROM pair WHERE id = 2 FOR UPDATE")
        outcome: list[BaseException | None] = []

        def second() -> None:
            try:
                b.execute("SELECT * FROM pair WHERE id = 1 FOR UPDATE")
                outcome.append(None)
            except errors.DeadlockDetected as exc:
                outcome.append(exc)

        t = threading.Thread(target=second)
        t.start()
        try:
            a.execute("SELECT * FROM pair WHERE id = 2 FOR UPDATE")
        except errors.DeadlockDetected as exc:
            outcome.append(exc)
        a.rollback()
        t.join(30)
        b.rollback()
    finally:
        a.close()
        b.close()
    assert any(isinstance(o, errors.DeadlockDetected) for o in outcome)
    deadline = time.monotonic() + 10
    while _deadlocks(db_url) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _deadlocks(db_url) - before == 1
