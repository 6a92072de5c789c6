"""The claim and the rescue walk their index in order, whatever the statistics say.

A table nobody has analyzed yet (a fresh deployment, or a burst of work autovacuum has
not caught up with) once got a bitmap scan and a sort of every pending row on each
claim: 1,900 jobs/s draining 20,000 jobs against 6,000-7,000 after `ANALYZE`. These
tests build such tables (autovacuum off, no ANALYZE) and read the plans PostgreSQL
makes for the statements the store sends, custom and generic (a prepared statement's
plan after its first executions).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

from jobs_core import JobStatus, claim_order_key
from jobs_postgres import SCHEMA_VERSION, PostgresStore
from tests.pg_admin import throwaway_database

PENDING = 20_000
TOPICS = ["alpha", "beta", "gamma", "delta"]
Plan = dict[str, Any]


@pytest.fixture(scope="module")
def plan_db() -> Iterator[str]:
    with throwaway_database("jobs_plan") as url:
        yield url


@pytest.fixture
async def store(plan_db: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(plan_db, table="jobs")
    await store.count_by_status()  # the table, as the store lays it out
    conn = await asyncpg.connect(plan_db)
    try:
        await conn.execute("ALTER TABLE jobs SET (autovacuum_enabled = false)")
    finally:
        await conn.close()
    yield store
    await store.close()
    conn = await asyncpg.connect(plan_db)
    try:
        await conn.execute("DROP TABLE jobs, jobs_schema_version, jobs_topics, jobs_schedules")
    finally:
        await conn.close()


async def fill(url: str, status: str, n: int, *, priorities: bool = False) -> None:
    """`n` jobs over `TOPICS`, due or with expired leases, in one INSERT; no ANALYZE.

    With `priorities`, job g has priority (g % 201) - 100 and every tenth one is due
    only in an hour: high-priority jobs not yet due sit at the front of the claim
    index, where each claim walks past them."""
    processing = status == "processing"
    # the first release's columns (a table of that layout is filled too), then priority
    priority = (", priority", ", CASE WHEN $5 THEN g % 201 - 100 END") if priorities else ("", "")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO jobs (id, topic, payload, status, run_at, locked_until, lock_token,"
            f" retries, max_retries, last_error, created, updated{priority[0]})"
            " SELECT gen_random_uuid(), ($1::text[])[1 + g % 4], '{}'::jsonb,"
            " $2, now() - interval '1 hour' + g * interval '1 ms'"
            " + CASE WHEN $5 AND g % 10 = 0 THEN interval '2 hours' ELSE interval '0' END,"
            " CASE WHEN $3 THEN now() - interval '1 hour' + g * interval '1 ms' END,"
            f" CASE WHEN $3 THEN 'token' END, 0, 3, NULL, now(), now(){priority[1]}"
            " FROM generate_series(1, $4) AS g",
            TOPICS,
            status,
            processing,
            n,
            priorities,
        )
        analyzed = await conn.fetchval(
            "SELECT last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL"
            " FROM pg_stat_user_tables WHERE relname = 'jobs'"
        )
        assert not analyzed
    finally:
        await conn.close()


async def explain(url: str, sql: str, args: tuple[object, ...], *, generic: bool) -> Plan:
    """EXPLAIN ANALYZE of `sql` (rolled back), as a custom or a generic plan."""
    conn = await asyncpg.connect(url)
    try:
        mode = "force_generic_plan" if generic else "force_custom_plan"
        await conn.execute(f"SET plan_cache_mode = {mode}")
        async with conn.transaction():
            statement = await conn.prepare("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
            plan: Plan = json.loads(await statement.fetchval(*args))[0]["Plan"]
            raise _Rollback
    except _Rollback:
        return plan
    finally:
        await conn.close()


class _Rollback(Exception):
    """Leaves the EXPLAIN ANALYZE transaction without keeping its changes."""


def nodes(plan: Plan) -> Iterator[Plan]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def on_topics_table(node: Plan) -> bool:
    """Whether a plan node reads the topics table (its primary key or the table)."""
    return node.get("Relation Name") == "jobs_topics" or node.get("Index Name") == (
        "jobs_topics_pkey"
    )


def assert_topics_read_once(plan: Plan) -> None:
    """The claim reads the (here empty) topics table once, not once per job or topic."""
    reads = [node for node in nodes(plan) if on_topics_table(node) and "Plans" not in node]
    assert reads, "the claim does not read the topics table"
    assert all(node["Actual Loops"] == 1 for node in reads), reads


def assert_ordered_walk(plan: Plan, index: str, *, most_sorted: int) -> None:
    """`index` finds the jobs with an Index Scan (no BitmapAnd, no Seq Scan, bitmaps
    only over the primary key, to update rows already picked); a Sort sees at most
    `most_sorted` rows."""
    every = [node for node in nodes(plan) if not on_topics_table(node)]
    kinds = {node["Node Type"] for node in every}
    assert not kinds & {"BitmapAnd", "BitmapOr", "Seq Scan"}, kinds
    bitmaps = {n["Index Name"] for n in every if n["Node Type"] == "Bitmap Index Scan"}
    assert bitmaps <= {"jobs_pkey"}, bitmaps
    scans = [n.get("Index Name") for n in every if n["Node Type"] == "Index Scan"]
    assert index in scans, scans
    for node in every:
        if node["Node Type"] == "Sort":
            (child,) = node["Plans"]
            sorted_rows = child["Actual Rows"] * child["Actual Loops"]
            assert sorted_rows <= most_sorted, (sorted_rows, plan)


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
@pytest.mark.parametrize("wanted", [TOPICS[:1], TOPICS], ids=["one-topic", "four-topics"])
async def test_claim_walks_the_pending_index_without_statistics(
    store: PostgresStore, plan_db: str, wanted: list[str], generic: bool
) -> None:
    await fill(plan_db, "pending", PENDING)
    now = datetime.now(UTC)
    args = (now, wanted, 10, now + timedelta(minutes=5))
    plan = await explain(plan_db, store._sql.claim, args, generic=generic)
    # at most topics x limit candidates are ever sorted, never the 20,000 pending jobs
    assert_ordered_walk(plan, "jobs_pending_topic_idx", most_sorted=len(wanted) * 10)
    assert_topics_read_once(plan)
    assert plan["Actual Rows"] == 10


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
async def test_a_limited_claim_walks_each_topic_up_to_its_allowance(
    store: PostgresStore, plan_db: str, generic: bool
) -> None:
    """With a policy row, the claim statement claims nothing and names the held topics;
    `claim_within` then walks each topic's pending index in order, at most its
    allowance long, and the store's claim keeps the limit."""
    await fill(plan_db, "pending", PENDING, priorities=True)
    await store.set_max_running("alpha", 2)
    now = datetime.now(UTC)
    lease_end = now + timedelta(minutes=5)
    held = await explain(plan_db, store._sql.claim, (now, TOPICS, 10, lease_end), generic=generic)
    assert held["Actual Rows"] == 1  # the held topics, and no job claimed
    walks = [n for n in nodes(held) if n.get("Index Name") == "jobs_pending_topic_idx"]
    assert walks
    assert all(n["Actual Loops"] == 0 for n in walks), walks  # never executed
    args = (now, TOPICS, 10, lease_end, [2, 10, 10, 10])
    plan = await explain(plan_db, store._sql.claim_within, args, generic=generic)
    assert_ordered_walk(plan, "jobs_pending_topic_idx", most_sorted=2 + 3 * 10)
    assert plan["Actual Rows"] == 10
    claimed = await store.claim(topics=TOPICS, now=now, lease=timedelta(minutes=1), limit=40)
    assert len([job for job in claimed if job.topic == "alpha"]) == 2
    assert len(claimed) == 40  # the other topics are not held back
    assert claimed == sorted(claimed, key=claim_order_key)
    assert await store.claim(topics=["alpha"], now=now, lease=timedelta(minutes=1), limit=5) == []


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
@pytest.mark.parametrize("wanted", [TOPICS[:1], TOPICS], ids=["one-topic", "four-topics"])
async def test_claim_by_priority_walks_the_pending_index_without_sorting_it(
    store: PostgresStore, plan_db: str, wanted: list[str], generic: bool
) -> None:
    """Mixed priorities, the highest ones partly not yet due: the claim still walks
    `(topic, priority DESC, run_at, id)` in order, sorting only the merge of at most
    topics x limit candidates, and takes the highest due priorities."""
    await fill(plan_db, "pending", PENDING, priorities=True)
    now = datetime.now(UTC)
    args = (now, wanted, 10, now + timedelta(minutes=5))
    plan = await explain(plan_db, store._sql.claim, args, generic=generic)
    assert_ordered_walk(plan, "jobs_pending_topic_idx", most_sorted=len(wanted) * 10)
    assert plan["Actual Rows"] == 10
    claimed = await store.claim(topics=wanted, now=now, lease=timedelta(minutes=1), limit=10)
    # priority 100: every g with g % 201 == 200, more than 10 of them due in any topic
    assert [job.priority for job in claimed] == [100] * 10
    assert all(job.run_at <= now for job in claimed)
    assert claimed == sorted(claimed, key=claim_order_key)


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
async def test_rescue_walks_the_processing_index_without_statistics(
    store: PostgresStore, plan_db: str, generic: bool
) -> None:
    await fill(plan_db, "processing", PENDING)
    sql, args = rescue_statement(store, datetime.now(UTC), 100)
    plan = await explain(plan_db, sql, args, generic=generic)
    assert_ordered_walk(plan, "jobs_processing_idx", most_sorted=0)
    assert plan["Actual Rows"] == 100


def rescue_statement(
    store: PostgresStore, now: datetime, limit: int
) -> tuple[str, tuple[object, ...]]:
    """The SQL and parameters `store.expired` sends, compiled as its driver does."""
    compiled = store._expired_query(now, limit).compile(
        dialect=asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]
    )
    params = compiled.construct_params()
    return str(compiled), tuple(params[name] for name in compiled.positiontup or ())


#: The table as the first release laid it out (schema version 1, `(run_at, id)` index).
OLD_LAYOUT = (Path(__file__).parent / "fixtures" / "v1_schema.sql").read_text()


async def test_a_table_of_the_previous_layout_gets_the_claim_index(plan_db: str) -> None:
    """Opening it adds the per-topic index, drops the one it replaces, keeps the rows."""
    conn = await asyncpg.connect(plan_db)
    try:
        await conn.execute(OLD_LAYOUT)
        await fill(plan_db, "pending", 100)
        store = PostgresStore(plan_db, table="jobs")
        try:
            claimed = await store.claim(
                topics=TOPICS, now=datetime.now(UTC), lease=timedelta(minutes=1), limit=10
            )
            counts = await store.count_by_status()
        finally:
            await store.close()
        indexes = await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'jobs'")
        version = await conn.fetchval("SELECT max(version) FROM jobs_schema_version")
    finally:
        await conn.execute(
            "DROP TABLE IF EXISTS jobs, jobs_schema_version, jobs_topics, jobs_schedules"
        )
        await conn.close()
    names = {row["indexname"] for row in indexes}
    assert "jobs_pending_topic_idx" in names
    assert "jobs_pending_idx" not in names
    assert len(claimed) == 10
    assert counts[JobStatus.PENDING] == 90
    assert counts[JobStatus.PROCESSING] == 10
    assert version == SCHEMA_VERSION
