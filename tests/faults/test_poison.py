"""A job that always kills its worker (RELIABILITY §4.2, last row), for real: its handler
SIGKILLs its own process. The supervisor restarts the worker each time; after
1 + max_retries lost leases the job is `failed` with "lock expired" and stops coming
back, while the other jobs complete."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from jobs_core import LOCK_EXPIRED, EnqueueOptions, Jobs, JobStatus, open_store
from tests.faults.fleet import Fleet, publish
from tests.faults.ledger import Ledger, all_jobs, check
from tests.faults.pg import fresh_database


async def _poison_run(db: str, tmp: Path, name: str) -> None:
    ledger_path = tmp / "ledger.db"
    Ledger(ledger_path).conn.close()
    jobs = Jobs(open_store(db))
    poison = await jobs.enqueue_with_options("poison", None, EnqueueOptions(max_retries=3))
    normal = await jobs.enqueue_many("chaos", [{"n": n} for n in range(50)])
    fleet = Fleet(
        db=db,
        ledger=ledger_path,
        logs=tmp / "logs",
        size=1,
        args=["--pool", "4", "--batch", "4", "--lock", "3", "--poll", "0.2"],
    )
    fleet.procs = [fleet.spawn(0, "--poison-topic", "poison")]
    deaths = 0
    deadline = time.monotonic() + 120
    try:
        while True:
            state = await jobs.get(poison.id)
            stats = await jobs.stats()
            if state.status is JobStatus.FAILED and stats.pending + stats.processing == 0:
                break
            assert time.monotonic() < deadline, f"poison job still {state.status} after 120 s"
            if fleet.procs[0].poll() is not None:
                deaths += 1
                fleet.procs[0] = fleet.spawn(0, "--poison-topic", "poison")
            await asyncio.sleep(0.1)
        # It stays failed: nobody claims it again.
        await asyncio.sleep(2)
        assert (await jobs.get(poison.id)).status is JobStatus.FAILED
    finally:
        codes = fleet.stop()
    ledger = Ledger(ledger_path)
    try:
        executions = ledger.executions()
        report = check(
            enqueued=[poison.id, *(j.id for j in normal)],
            jobs=await all_jobs(jobs.store),
            stats=await jobs.stats(),
            executions=executions,
            outcomes=ledger.outcomes(),
            kills=False,
        )
    finally:
        ledger.close()
    final = await jobs.get(poison.id)
    await jobs.aclose()
    runs = sum(1 for e in executions if e.job_id == poison.id)
    publish(name, {**report.figures, "poison_runs": runs, "worker_deaths": deaths})
    report.assert_ok()
    assert (final.status, final.retries, final.last_error) == (JobStatus.FAILED, 3, LOCK_EXPIRED)
    assert runs == 4
    assert deaths == 4
    assert codes == [0]


@pytest.mark.fault
@pytest.mark.fault_sqlite
@pytest.mark.timeout(300)
async def test_poison_job_kills_its_worker_sqlite(tmp_path: Path) -> None:
    await _poison_run(f"sqlite:///{tmp_path / 'jobs.db'}", tmp_path, "poison-sqlite")


@pytest.mark.fault
@pytest.mark.fault_postgres
@pytest.mark.timeout(300)
async def test_poison_job_kills_its_worker_postgres(tmp_path: Path) -> None:
    with fresh_database() as url:
        await _poison_run(url, tmp_path, "poison-postgres")
