"""The kill -9 chaos run of RELIABILITY §4.3, shared by the PostgreSQL and SQLite tests."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs

from jobs_core import JobQuery, Jobs, JobsConfig, JobStatus, open_store
from tests.faults.fleet import Fleet, percentile, publish, seed
from tests.faults.ledger import Ledger, all_jobs, check

TOPIC = "chaos"
LOCK = 3.0
POLL = 0.2


@attrs.frozen(kw_only=True)
class ChaosPlan:
    """Parameters of one run (the plan's table, possibly scaled)."""

    name: str
    initial: int
    rate: float  # jobs/s enqueued during the kill phase
    workers: int = 4
    pool: int
    batch: int
    kill_every: float = 5.0
    kill_phase: float = 60.0
    ceiling: float  # hard limit for the drain after the kill phase
    max_retries: int = 3


async def _sample_stuck(jobs: Jobs, lags: list[float], stop: asyncio.Event) -> None:
    """Every second: how far past its lease the stalest `processing` row is."""
    while not stop.is_set():
        page = await jobs.store.list(JobQuery(status=JobStatus.PROCESSING, limit=500))
        now = datetime.now(UTC)
        worst = max(
            ((now - j.locked_until).total_seconds() for j in page.items if j.locked_until),
            default=0.0,
        )
        lags.append(worst)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def _enqueue_steadily(jobs: Jobs, rate: float, ids: list[str], stop: asyncio.Event) -> None:
    tick = 0.2
    owed = 0.0
    while not stop.is_set():
        owed += rate * tick
        count, owed = int(owed), owed - int(owed)
        if count:
            made = await jobs.enqueue_many(TOPIC, [{"late": i} for i in range(count)])
            ids.extend(j.id for j in made)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), tick)


async def _unfinished(jobs: Jobs) -> int:
    stats = await jobs.stats()
    return stats.pending + stats.processing


async def run_chaos(plan: ChaosPlan, db: str, tmp: Path) -> dict[str, Any]:
    """Run the plan against the store at `db`; assert the invariants; return the figures."""
    rng = random.Random(seed())
    ledger_path = tmp / "ledger.db"
    Ledger(ledger_path).conn.close()  # create the ledger before the workers race to
    config = JobsConfig(
        lock_duration=timedelta(seconds=LOCK),
        poll_interval=timedelta(seconds=POLL),
        max_retries=plan.max_retries,
    )
    jobs = Jobs(open_store(db), config=config)
    ids: list[str] = []
    for start in range(0, plan.initial, 1000):
        made = await jobs.enqueue_many(
            TOPIC, [{"n": n} for n in range(start, min(start + 1000, plan.initial))]
        )
        ids.extend(j.id for j in made)
    fleet = Fleet(
        db=db,
        ledger=ledger_path,
        logs=tmp / "logs",
        size=plan.workers,
        args=[
            "--pool",
            str(plan.pool),
            "--batch",
            str(plan.batch),
            "--lock",
            str(LOCK),
            "--poll",
            str(POLL),
        ],
    )
    stop_enqueue, stop_sampling = asyncio.Event(), asyncio.Event()
    lags: list[float] = []
    self_exits: list[tuple[int, int | None]] = []
    fleet.start()
    for proc in fleet.procs:
        await asyncio.to_thread(fleet.wait_ready, proc, 120.0)
    started = time.time()
    try:
        enqueuer = asyncio.create_task(_enqueue_steadily(jobs, plan.rate, ids, stop_enqueue))
        sampler = asyncio.create_task(_sample_stuck(jobs, lags, stop_sampling))
        kills = round(plan.kill_phase / plan.kill_every)
        for _ in range(kills):
            await asyncio.sleep(plan.kill_every)
            self_exits.extend(fleet.dead())
            fleet.kill_one(rng)
        stop_enqueue.set()
        await enqueuer
        kill_phase_end = time.time()
        remaining = await _unfinished(jobs)
        done_in_phase = len(ids) - remaining
        throughput = done_in_phase / (kill_phase_end - started)
        bound = min(plan.kill_phase + 2 * LOCK + remaining / max(throughput, 1e-9), plan.ceiling)
        while await _unfinished(jobs) and time.time() - kill_phase_end < plan.ceiling:
            self_exits.extend(fleet.dead())
            await asyncio.sleep(0.5)
        drain = time.time() - kill_phase_end
        stop_sampling.set()
        await sampler
    finally:
        codes = fleet.stop()
    ledger = Ledger(ledger_path)
    try:
        final = await all_jobs(jobs.store)
        report = check(
            enqueued=ids,
            jobs=final,
            stats=await jobs.stats(),
            executions=ledger.executions(),
            outcomes=ledger.outcomes(),
            kills=True,
        )
        executions = ledger.executions()
    finally:
        ledger.close()
        await jobs.aclose()

    # Recovery: for each execution cut short by a kill, the next start of that job.
    by_job: dict[str, list[float]] = defaultdict(list)
    for e in executions:
        by_job[e.job_id].append(e.started_at)
    recovery: list[float] = []
    for kill in fleet.kills:
        for e in executions:
            if e.pid == kill.pid and e.finished_at is None:
                later = [t for t in by_job[e.job_id] if t > kill.at]
                if later:
                    recovery.append(min(later) - kill.at)
    orphaned = sum(j.retries for j in final)
    figures = {
        "backend": plan.name,
        "workers": f"{plan.workers} x pool {plan.pool}, batch {plan.batch}",
        "initial_jobs": plan.initial,
        "rate_per_s": plan.rate,
        "kills": len(fleet.kills),
        **report.figures,
        "throughput_jobs_per_s": throughput,
        "remaining_at_kill_phase_end": remaining,
        "drain_s": drain,
        "drain_bound_s": bound,
        "orphans_total": orphaned,
        "orphans_per_kill": orphaned / max(len(fleet.kills), 1),
        "recovery_p50_s": percentile(recovery, 50),
        "recovery_p99_s": percentile(recovery, 99),
        "max_processing_past_lease_s": max(lags, default=0.0),
        "worker_exit_codes": codes,
        "self_exits": self_exits,
    }
    publish(f"kill9-{plan.name}", figures)
    report.assert_ok()
    assert not self_exits, f"workers died by themselves: {self_exits}"
    assert codes == [0] * plan.workers, f"graceful stop exit codes: {codes}"
    assert drain <= bound, f"drain took {drain:.1f}s, bound {bound:.1f}s"
    assert figures["not_terminal"] == 0
    assert orphaned <= len(fleet.kills) * (plan.pool + plan.batch)
    # The run must have been a real one: work done under fire, and kills that cut it short.
    assert done_in_phase >= plan.initial // 10, f"only {done_in_phase} jobs ran in the kill phase"
    assert recovery, "no kill interrupted a running job: the chaos did not bite"
    # F2: no row stays processing past its lease longer than a poll plus a reaper sweep
    # (plus 1 s for a loaded machine: the sampler and the workers share two cores).
    assert max(lags, default=0.0) <= 2 * POLL + 1.0, f"stale processing rows: {max(lags):.2f}s"
    return figures
