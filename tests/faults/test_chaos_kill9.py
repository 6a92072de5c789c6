"""kill -9 chaos (RELIABILITY §4.3): 4 worker processes, one SIGKILLed every 5 s for 60 s.

Nothing is lost, nothing runs twice inside a valid lock, nothing completes twice, and
everything is terminal within the plan's bound. Figures are printed and written to
artifacts/faults/. `JOBS_FAULT_SEED` replays a run; `JOBS_FAULT_SCALE` scales the load.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.chaos import ChaosPlan, run_chaos
from tests.faults.fleet import scale
from tests.faults.pg import fresh_database


@pytest.mark.fault
@pytest.mark.fault_postgres
@pytest.mark.timeout(600)
async def test_kill9_postgres(tmp_path: Path) -> None:
    plan = ChaosPlan(
        name="postgres",
        initial=round(10_000 * scale()),
        rate=50 * scale(),
        pool=10,
        batch=10,
        ceiling=180,
    )
    with fresh_database() as url:
        await run_chaos(plan, url, tmp_path)


@pytest.mark.fault
@pytest.mark.fault_sqlite
@pytest.mark.timeout(600)
async def test_kill9_sqlite(tmp_path: Path) -> None:
    plan = ChaosPlan(
        name="sqlite",
        initial=round(2_000 * scale()),
        rate=10 * scale(),
        pool=4,
        batch=4,
        ceiling=300,
    )
    await run_chaos(plan, f"sqlite:///{tmp_path / 'jobs.db'}", tmp_path)
