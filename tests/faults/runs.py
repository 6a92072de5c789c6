"""Runs of leased jobs as the ledger shows them, read while worker processes write it.

The heartbeat fault tests wait on the ledger (a run started, a lease was renewed)
rather than sleeping, and check what a lease promises: no run starts while another's
lease may still be valid, and no run goes on once another has started.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import attrs

from jobs_core import FINAL_STATUSES, Job, Jobs
from tests.faults.ledger import Execution, Ledger, Outcome, Renewal, lease_ends

T = TypeVar("T")

#: How often a wait reads the ledger or the store again.
WAIT_EVERY = 0.05

# How the workers of the lease tests run (`tests.faults.worker_main` arguments).
LEASE = 1.0  # lease_duration: renewed every third of it
LOCK = 30.0  # the execution timeout, far beyond every job here
POLL = 0.2  # poll_interval: claims and rescue sweeps
#: Slack for a loaded two-core machine (other test runs share it).
SLACK = 2.0
#: The longest a killed worker's job may wait to run again: its lease runs out (at most
#: a lease after the kill), a rescue sweep finds it (a poll), the retry's backoff (the
#: default, 1 s +-10 %) passes, a claim takes it (a poll); plus slack.
RERUN_BOUND = 2 * LEASE + POLL + SLACK
#: One job at a time per worker, so each run is the only one of its process.
WORKER_ARGS = [
    *("--lease", str(LEASE), "--lock", str(LOCK), "--poll", str(POLL)),
    *("--pool", "1", "--batch", "1"),
]


@attrs.frozen(kw_only=True)
class Snapshot:
    """The ledger at one moment."""

    executions: list[Execution]
    outcomes: list[Outcome]
    renewals: list[Renewal]

    def runs(self, job_id: str) -> list[Execution]:
        """The job's executions, in the order they started."""
        return [e for e in self.executions if e.job_id == job_id]

    def renewals_of(self, job_id: str, pid: int | None = None) -> list[Renewal]:
        return [r for r in self.renewals if r.job_id == job_id and (pid is None or r.pid == pid)]

    def outcomes_of(self, job_id: str, pid: int | None = None) -> list[Outcome]:
        return [o for o in self.outcomes if o.job_id == job_id and (pid is None or o.pid == pid)]

    def lease_end(self, run: Execution) -> float:
        """The latest `run`'s lease may have been valid until (renewals included)."""
        return lease_ends([run], self.renewals)[run.job_id, run.lock_token]

    def lease_violations(self, job_id: str) -> list[str]:
        """Where two runs of the job overlapped: one started inside the previous run's
        lease, or the previous run was still going (it returned or was stopped later)."""
        bad = []
        tries = self.runs(job_id)
        for before, after in itertools.pairwise(tries):
            held = self.lease_end(before)
            if after.started_at < held:
                bad.append(
                    f"run {after.lock_token[:8]} (pid {after.pid}) started at"
                    f" {after.started_at:.3f}, inside the lease of {before.lock_token[:8]}"
                    f" (pid {before.pid}), valid until {held:.3f}"
                )
            ended = before.finished_at or before.stopped_at
            if ended is not None and ended > after.started_at:
                bad.append(
                    f"run {before.lock_token[:8]} (pid {before.pid}) went on until"
                    f" {ended:.3f}, after run {after.lock_token[:8]} (pid {after.pid})"
                    f" started at {after.started_at:.3f}"
                )
        return bad


def renewed_run(job_id: str, renewals: int) -> Callable[[Snapshot], Execution | None]:
    """For `in_ledger`: the job's first run, once `renewals` of its lease were applied."""

    def found(s: Snapshot) -> Execution | None:
        runs = s.runs(job_id)
        if not runs:
            return None
        applied = [r for r in s.renewals_of(job_id, runs[0].pid) if r.applied]
        return runs[0] if len(applied) >= renewals else None

    return found


def nth_run(job_id: str, n: int) -> Callable[[Snapshot], Execution | None]:
    """For `in_ledger`: the job's `n`-th run (from 1), once it started."""

    def found(s: Snapshot) -> Execution | None:
        runs = s.runs(job_id)
        return runs[n - 1] if len(runs) >= n else None

    return found


def snapshot(path: Path) -> Snapshot:
    ledger = Ledger(path)
    try:
        return Snapshot(
            executions=ledger.executions(),
            outcomes=ledger.outcomes(),
            renewals=ledger.renewals(),
        )
    finally:
        ledger.close()


def new_ledger(path: Path) -> Path:
    """Create the ledger file before the workers race to."""
    Ledger(path).conn.close()
    return path


async def until(
    what: str, found: Callable[[], T | None], timeout: float, every: float = WAIT_EVERY
) -> T:
    """Call `found` until it returns something (not None); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (value := found()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        await asyncio.sleep(every)
    return value


async def in_ledger(
    path: Path, what: str, found: Callable[[Snapshot], T | None], timeout: float
) -> T:
    """Wait until the ledger shows what `found` looks for; that."""
    return await until(what, lambda: found(snapshot(path)), timeout)


async def finished(jobs: Jobs, job_id: str, timeout: float) -> Job:
    """Wait until the job is final (`completed`, `failed` or `cancelled`); the job as
    stored then."""
    deadline = time.monotonic() + timeout
    while True:
        job = await jobs.get(job_id)
        if job.status in FINAL_STATUSES:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job.status.value} after {timeout:.0f}s")
        await asyncio.sleep(WAIT_EVERY)
