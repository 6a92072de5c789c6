"""Chaos (RELIABILITY section 4.3, SQLite column): SIGKILL workers mid-run, lose nothing.

Four worker processes (pool 4) run jobs that take 10-200 ms while more are enqueued;
a random worker is killed with SIGKILL every few seconds and replaced. The ledger
(one O_APPEND file per process, written before the handler returns) and the job table
are then checked: every job completed, no claim handed out twice, no job run twice
while a lease was valid, nothing left `processing` past its lease for long.
Run with `pytest -m fault -k kill9`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import sqlite3
import subprocess
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobs_core import Jobs
from jobs_sqlite import SQLiteStore
from jobs_sqlite._rows import format_time
from tests.sqlite import _harness as h

pytestmark = pytest.mark.fault

INITIAL_JOBS = 2000
ENQUEUE_PER_SECOND = 10
WORKERS = 4
KILL_EVERY = float(os.environ.get("JOBS_KILL_EVERY", "4"))
KILL_PHASE = float(os.environ.get("JOBS_KILL_PHASE", "24"))
LOCK, POLL = 3.0, 0.2
#: A lease may stay expired this long before some worker must have rescued it:
#: poll + reaper interval, plus slack for a machine shared with other test runs.
STUCK_SLACK = timedelta(seconds=POLL * 2 + 3)


def _stuck(db: Path) -> int:
    cutoff = format_time(datetime.now(UTC) - STUCK_SLACK)
    with sqlite3.connect(db, timeout=30) as raw:
        return int(
            raw.execute(
                "SELECT count(*) FROM jobs WHERE status = 'processing' AND locked_until < ?",
                (cutoff,),
            ).fetchone()[0]
        )


async def test_kill9_workers_lose_nothing(tmp_path: Path) -> None:
    """SIGKILL a random worker every few seconds; every job still ends `completed`."""
    seed = int(os.environ.get("JOBS_CHAOS_SEED", str(random.randrange(2**32))))
    print(f"chaos seed {seed} (replay with JOBS_CHAOS_SEED={seed})")
    rng = random.Random(seed)
    db = tmp_path / "jobs.db"
    jobs = Jobs(SQLiteStore(db))
    queued = {job.id for job in await jobs.enqueue_many("work", [{}] * INITIAL_JOBS)}

    def start(n: int) -> subprocess.Popen[str]:
        return h.spawn(
            "work", db, tmp_path / f"{n}.ledger",
            "--lock", str(LOCK), "--poll", str(POLL), "--pool", "4", "--batch", "4",
            "--sleep-ms", "10", "200",
            log=tmp_path / f"{n}.log",
        )  # fmt: skip

    spawned = 0
    workers = []
    for _ in range(WORKERS):
        workers.append(start(spawned))
        spawned += 1
    for proc in workers:
        await asyncio.to_thread(h.wait_line, proc, "started")
    killed: set[int] = set()
    stuck_samples: list[int] = []
    began = time.monotonic()
    next_kill = began + KILL_EVERY
    next_sample = began
    while time.monotonic() - began < KILL_PHASE:
        queued.add((await jobs.enqueue("work", {})).id)
        now = time.monotonic()
        if now >= next_sample:
            stuck_samples.append(await asyncio.to_thread(_stuck, db))
            next_sample = now + 1
        if now >= next_kill:
            victim = workers.pop(rng.randrange(len(workers)))
            victim.kill()
            victim.wait(timeout=10)
            killed.add(victim.pid)
            workers.append(start(spawned))
            spawned += 1
            await asyncio.to_thread(h.wait_line, workers[-1], "started")  # kill only live ones
            next_kill = time.monotonic() + KILL_EVERY
        await asyncio.sleep(1 / ENQUEUE_PER_SECOND)
    kill_phase_end = time.monotonic()

    def all_terminal() -> bool:
        stuck_samples.append(_stuck(db))
        counts = h.statuses(db)
        return counts["completed"] + counts["failed"] == len(queued)

    try:
        await asyncio.to_thread(
            h.until, all_terminal, timeout=300, what="all jobs terminal", every=1
        )
    finally:
        for proc in workers:
            h.stop(proc)
    drained_in = time.monotonic() - kill_phase_end
    await jobs.aclose()

    runs = h.ledger(tmp_path)
    by_job: dict[str, list[h.Run]] = defaultdict(list)
    for run in runs:
        by_job[run.job_id].append(run)
    with sqlite3.connect(db) as raw:
        final = dict(raw.execute("SELECT id, status FROM jobs").fetchall())

    orphans = [sum(1 for r in runs if r.pid == pid) for pid in sorted(killed)]
    print(
        f"{len(queued)} jobs, {len(runs)} runs, {len(killed)} kills, all terminal"
        f" {drained_in:.1f}s after the kill phase; re-runs {len(runs) - len(by_job)};"
        f" runs by each killed worker {orphans}"
    )
    # I1: nothing lost, and with at most a handful of kills nothing used up its retries.
    assert set(final) == queued
    assert {status for status in final.values()} == {"completed"}
    assert set(by_job) == queued
    # No claim handed out twice: every (job, token) pair ran once.
    assert len({(r.job_id, r.token) for r in runs}) == len(runs)
    for job_id, attempts in by_job.items():
        attempts.sort(key=lambda r: r.started)
        # I4: bounded attempts; every extra run is explained by a killed process.
        assert len(attempts) <= 4, attempts
        survivors = [r for r in attempts if r.pid not in killed]
        assert len(survivors) <= 1, (job_id, attempts)
        # I3: no run started while an earlier run's lease was still valid.
        for before, after in itertools.pairwise(attempts):
            assert after.started >= before.locked_until, (job_id, before, after)
    # F2: no lease stayed expired (unrescued) for long at any sample.
    assert max(stuck_samples) == 0, stuck_samples
    assert drained_in < 300
    for n in range(spawned):
        log = (tmp_path / f"{n}.log").read_text()
        assert "database is locked" not in log, log
        assert "Traceback" not in log, log
