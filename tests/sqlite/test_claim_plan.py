"""The claim walks `jobs_claim_idx` (status, priority DESC, run_at, id) in order: SQLite
never sorts the pending jobs for it, with or without statistics, for one topic or many.

The plans are those of the statement the store sends (`_statements.claim`), on a file
laid out by the store's own steps and filled with mixed priorities, the highest ones
partly not yet due (they sit at the front of the index, and each claim walks past them).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobs_core import claim_order_key
from jobs_sqlite import SQLiteStore
from jobs_sqlite._rows import format_time
from jobs_sqlite._statements import claim, claim_within
from jobs_sqlite._statements import policies as sql_policies

TOPICS = ["alpha", "beta", "gamma"]
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def fill(path: Path, n: int) -> None:
    """`n` jobs over `TOPICS`, a quarter of them pending: job g has priority
    (g % 201) - 100, and every tenth one is due only in an hour."""
    with sqlite3.connect(path) as raw:
        raw.execute(
            "WITH RECURSIVE seq(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM seq WHERE g < ?)"
            " INSERT INTO jobs (id, topic, payload, status, run_at, retries, max_retries,"
            " priority, created, updated)"
            " SELECT printf('%032x', g), ?4 ->> ('$[' || (g % 3) || ']'), 'null',"
            " CASE WHEN g % 4 = 0 THEN 'pending' ELSE 'completed' END,"
            " CASE WHEN g % 10 = 0 THEN ?3 ELSE ?2 END, 0, 3, g % 201 - 100, ?2, ?2 FROM seq",
            (
                n,
                format_time(NOW - timedelta(minutes=1)),
                format_time(NOW + timedelta(hours=1)),
                '["alpha", "beta", "gamma"]',
            ),
        )


def plan_of(path: Path, topics: list[str]) -> list[str]:
    """EXPLAIN QUERY PLAN of the claim as the store runs it (lease end, now, now, the
    topics, limit)."""
    stamp = format_time(NOW)
    with sqlite3.connect(path) as raw:
        rows = raw.execute(
            "EXPLAIN QUERY PLAN " + claim(len(topics)), (stamp, stamp, stamp, *topics, 10)
        )
        return [row[-1] for row in rows]


@pytest.mark.parametrize("analyzed", [False, True], ids=["no-statistics", "analyzed"])
@pytest.mark.parametrize("wanted", [TOPICS[:1], TOPICS], ids=["one-topic", "three-topics"])
async def test_the_claim_walks_its_index_in_order_and_takes_the_highest_due_priority(
    db_path: Path, wanted: list[str], analyzed: bool
) -> None:
    store = SQLiteStore(db_path)
    try:
        await store.count_by_status()  # the file, as the store lays it out
        fill(db_path, 20_000)
        if analyzed:
            with sqlite3.connect(db_path) as raw:
                raw.execute("ANALYZE")
        plan = plan_of(db_path, wanted)
        text = "\n".join(plan)
        assert "SEARCH jobs USING INDEX jobs_claim_idx (status=?)" in plan, text
        assert "TEMP B-TREE" not in text, text  # no sort step
        assert not any(step.startswith("SCAN") for step in plan), text
        claimed = await store.claim(topics=wanted, now=NOW, lease=timedelta(minutes=1), limit=10)
    finally:
        await store.close()
    assert [job.id for job in claimed] == first_due(20_000, wanted, 10)
    assert claimed == sorted(claimed, key=claim_order_key)
    assert claimed[0].priority > 90


def first_due(n: int, topics: list[str], limit: int) -> list[str]:
    """The ids the claim must take from `fill(path, n)`: due pending jobs of `topics`,
    priority descending, then run_at, then id."""
    due = [
        (-(g % 201 - 100), f"{g:032x}")
        for g in range(1, n + 1)
        if g % 4 == 0 and g % 10 != 0 and TOPICS[g % 3] in topics
    ]
    return [job_id for _, job_id in sorted(due)[:limit]]


def plan_within(path: Path, allowances: dict[str, int]) -> list[str]:
    """EXPLAIN QUERY PLAN of the claim with per-topic allowances (`claim_within`)."""
    stamp = format_time(NOW)
    branches = [value for topic, n in allowances.items() for value in (stamp, topic, n)]
    with sqlite3.connect(path) as raw:
        rows = raw.execute(
            "EXPLAIN QUERY PLAN " + claim_within(len(allowances)), (stamp, stamp, *branches, 10)
        )
        return [row[-1] for row in rows]


@pytest.mark.parametrize("analyzed", [False, True], ids=["no-statistics", "analyzed"])
async def test_a_limited_claim_walks_the_index_once_per_topic(
    db_path: Path, analyzed: bool
) -> None:
    """With policies (a global limit, a worker's caps) each topic is its own ordered walk
    of `jobs_claim_idx`, at most its allowance long; only the merge of those few rows
    sorts. The topics table is read by its primary key."""
    store = SQLiteStore(db_path)
    try:
        await store.count_by_status()
        fill(db_path, 20_000)
        if analyzed:
            with sqlite3.connect(db_path) as raw:
                raw.execute("ANALYZE")
        plan = plan_within(db_path, {"alpha": 2, "beta": 10})
        text = "\n".join(plan)
        walks = [
            step
            for step in plan
            if "USING INDEX jobs_claim_idx (status=? AND" in step
            or step == "SEARCH jobs USING INDEX jobs_claim_idx (status=?)"
        ]
        assert len(walks) == 2, text
        assert not any(step.startswith("SCAN jobs") for step in plan), text
        with sqlite3.connect(db_path) as raw:
            policies = [
                row[-1]
                for row in raw.execute("EXPLAIN QUERY PLAN " + sql_policies(2), ("alpha", "beta"))
            ]
        assert any("sqlite_autoindex_jobs_topics_1" in step for step in policies), policies
        await store.set_max_running("alpha", 2)
        claimed = await store.claim(
            topics=["alpha", "beta"], now=NOW, lease=timedelta(minutes=1), limit=10
        )
    finally:
        await store.close()
    alpha = [job.id for job in claimed if job.topic == "alpha"]
    beta = [job.id for job in claimed if job.topic == "beta"]
    assert len(claimed) == 10
    assert alpha == first_due(20_000, ["alpha"], 2)[: len(alpha)]
    assert beta == first_due(20_000, ["beta"], 10)[: len(beta)]
    assert claimed == sorted(claimed, key=claim_order_key)
