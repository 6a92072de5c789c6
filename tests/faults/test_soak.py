"""Soak (opt-in, `nox -s soak`): the kill -9 chaos of §4.3 held for much longer.

`JOBS_SOAK_MINUTES` (default 30) sets the length of the kill phase; a worker is
SIGKILLed every 5 s throughout, while jobs arrive at a steady rate. The same invariants
as the short run must hold at the end. (The §4.7 bloat benchmark with pruning at
500 jobs/s is a separate benchmark, not this test.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.faults.chaos import ChaosPlan, run_chaos
from tests.faults.pg import fresh_database

MINUTES = float(os.environ.get("JOBS_SOAK_MINUTES", "30"))


@pytest.mark.soak
@pytest.mark.timeout(int(MINUTES * 60 + 900))
async def test_soak_kill9_postgres(tmp_path: Path) -> None:
    plan = ChaosPlan(
        name="soak-postgres",
        initial=2_000,
        rate=60,
        pool=10,
        batch=10,
        kill_phase=MINUTES * 60,
        ceiling=300,
    )
    with fresh_database() as url:
        await run_chaos(plan, url, tmp_path)


@pytest.mark.soak
@pytest.mark.timeout(int(MINUTES * 60 + 900))
async def test_soak_kill9_sqlite(tmp_path: Path) -> None:
    plan = ChaosPlan(
        name="soak-sqlite",
        initial=500,
        rate=15,
        pool=4,
        batch=4,
        kill_phase=MINUTES * 60,
        ceiling=300,
    )
    await run_chaos(plan, f"sqlite:///{tmp_path / 'jobs.db'}", tmp_path)
