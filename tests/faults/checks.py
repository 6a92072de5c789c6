"""Checks shared by the SQLite and PostgreSQL suites: schema races and graceful stop."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

from jobs_core import Jobs, JobStatus, open_store
from tests.faults.fleet import REPO, Fleet
from tests.faults.ledger import Ledger, all_jobs


def race_schema_creation(url: str, processes: int = 8) -> list[str]:
    """Start `processes` that all create the schema at the same instant; their outputs."""
    start_at = time.time() + 4.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.faults.schema_main", url, str(start_at)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(processes)
    ]
    outputs = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        outputs.append(f"exit {p.returncode}: {out.strip()}")
    return outputs


async def graceful_stop(db: str, tmp: Path) -> dict[str, object]:
    """SIGTERM a worker with 10 jobs in flight: they finish, no new claim, exit 0."""
    ledger_path = tmp / "ledger.db"
    Ledger(ledger_path).conn.close()
    jobs = Jobs(open_store(db))
    first = [j.id for j in await jobs.enqueue_many("chaos", [{"n": n} for n in range(10)])]
    fleet = Fleet(
        db=db,
        ledger=ledger_path,
        logs=tmp / "logs",
        size=1,
        args=["--pool", "10", "--batch", "10", "--lock", "30", "--poll", "0.2"],
    )
    (proc,) = fleet.procs = [fleet.spawn(0, "--min-ms", "1500", "--max-ms", "2500")]
    ledger = Ledger(ledger_path)
    try:
        deadline = time.monotonic() + 60
        while len(ledger.executions()) < 10:
            assert time.monotonic() < deadline, "the worker never took the 10 jobs"
            await asyncio.sleep(0.05)
        later = [j.id for j in await jobs.enqueue_many("chaos", [{"late": n} for n in range(5)])]
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
        final = {j.id: j for j in await all_jobs(jobs.store)}
        executed = {e.job_id for e in ledger.executions() if e.finished_at is not None}
    finally:
        ledger.close()
        fleet.stop()
        await jobs.aclose()
    assert code == 0
    assert all(final[i].status is JobStatus.COMPLETED for i in first)
    assert all(final[i].status is JobStatus.PENDING for i in later)  # no claim after SIGTERM
    assert executed == set(first)
    assert not any(j.status is JobStatus.PROCESSING for j in final.values())
    return {"exit_code": code, "in_flight_completed": len(first), "claimed_after_signal": 0}
