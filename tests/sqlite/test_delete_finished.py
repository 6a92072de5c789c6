"""`SQLiteStore.delete_finished` on real files: its plan, and stores of one file racing."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import pytest

from jobs_core import FINAL_STATUSES, Job, JobStatus, StoreError
from jobs_core.testing.contract import make_job
from jobs_sqlite import SQLiteStore
from jobs_sqlite import _statements as sql

_T0 = datetime(2030, 1, 1, tzinfo=UTC)
_SUBSETS = [
    tuple(sorted(subset))
    for size in (1, 2)
    for subset in itertools.combinations(sorted(FINAL_STATUSES), size)
]


def _finished(status: JobStatus, updated: datetime) -> Job:
    return attrs.evolve(make_job(now=updated), status=status, updated=updated)


@pytest.mark.parametrize("statuses", _SUBSETS, ids="+".join)
async def test_plan_deletes_by_primary_key_and_never_scans_the_table(
    store: SQLiteStore, db_path: Path, statuses: tuple[JobStatus, ...]
) -> None:
    """The DELETE finds its rows by id; each branch reads its status on an index, so a
    call never walks the pending and processing rows a worker is busy with."""
    await store.count_by_status()  # creates the file and its schema
    with sqlite3.connect(db_path) as raw:
        plan = [
            row[3]
            for row in raw.execute(f"EXPLAIN QUERY PLAN {sql.delete_finished(statuses)}", ("x", 1))
        ]
    assert any("USING INDEX sqlite_autoindex_jobs_1 (id=?)" in step for step in plan), plan
    searches = [step for step in plan if step.startswith(("SEARCH jobs", "SCAN jobs"))]
    assert len(searches) == len(statuses) + 1, plan
    assert all(step.startswith("SEARCH jobs USING") for step in searches), plan
    assert all("(status=?" in step for step in searches[1:]), plan


async def test_two_stores_on_one_file_split_the_rounds(db_path: Path) -> None:
    """Two stores (as two processes would) deleting at once: `BEGIN IMMEDIATE` makes each
    round one step, so every old job goes exactly once and the newer one stays."""
    first, second = SQLiteStore(db_path), SQLiteStore(db_path)
    try:
        old = [_finished(status, _T0) for status in FINAL_STATUSES for _ in range(15)]
        new = _finished(JobStatus.COMPLETED, _T0 + timedelta(hours=2))
        await first.insert([*old, new])
        before = _T0 + timedelta(hours=1)

        async def drain(store: SQLiteStore) -> list[int]:
            rounds: list[int] = []
            while not rounds or rounds[-1] == 4:
                rounds.append(
                    await store.delete_finished(statuses=FINAL_STATUSES, before=before, limit=4)
                )
            return rounds

        counts = await asyncio.gather(drain(first), drain(second))
        assert sum(map(sum, counts)) == len(old)
        assert all(n <= 4 for rounds in counts for n in rounds)
        page = await second.count_by_status()
        assert sum(page.values()) == 1
        assert await first.get(new.id) == new
    finally:
        await first.close()
        await second.close()


async def test_read_only_store_refuses_to_delete(store: SQLiteStore, db_path: Path) -> None:
    """A `?mode=ro` store fails with a `StoreError` and the jobs stay."""
    await store.insert([_finished(JobStatus.FAILED, _T0)])
    reader = SQLiteStore(db_path, read_only=True)
    try:
        with pytest.raises(StoreError):
            await reader.delete_finished(
                statuses=[JobStatus.FAILED], before=_T0 + timedelta(seconds=1), limit=10
            )
    finally:
        await reader.close()
    assert (await store.count_by_status())[JobStatus.FAILED] == 1
