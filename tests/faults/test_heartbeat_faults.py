"""Heartbeats on real stores, real clocks and worker processes (a SQLite WAL file, a
PostgreSQL database).

A job longer than its lease keeps it by renewal and completes on its first attempt,
though a second worker, with its lease rescuer, watches the same store throughout. A
worker killed with SIGKILL renews nothing more, so its job runs again elsewhere about a
lease later, and never while the killed run's lease (renewals included) could still be
valid. Every run, renewal and result is in the ledger (`tests.faults.ledger`).
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from jobs_core import Jobs, JobStatus, open_store
from tests.faults.fleet import Fleet, publish
from tests.faults.ledger import check
from tests.faults.runs import (
    LEASE,
    RERUN_BOUND,
    WORKER_ARGS,
    finished,
    in_ledger,
    new_ledger,
    nth_run,
    renewed_run,
    snapshot,
)
from tests.faults.stores import STORES, store_url


def _journal_mode(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        mode: str = conn.execute("PRAGMA journal_mode").fetchone()[0]
        return mode


def _fleet(url: str, ledger: Path, tmp: Path) -> Fleet:
    return Fleet(db=url, ledger=ledger, logs=tmp / "logs", size=2, args=WORKER_ARGS).start_ready()


@pytest.mark.fault
@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", STORES)
async def test_a_job_longer_than_its_lease_completes_on_its_first_attempt(
    backend: str, tmp_path: Path
) -> None:
    """3 s of work under a 1 s lease: renewed all along, never rescued, one run."""
    work = 3.0
    ledger = new_ledger(tmp_path / "ledger.db")
    with store_url(backend, tmp_path) as url:
        jobs = Jobs(open_store(url))  # the producer: it runs no worker and no rescuer
        fleet = _fleet(url, ledger, tmp_path)
        try:
            job = await jobs.enqueue("chaos", {"seconds": work})
            enqueued_at = time.time()
            final = await finished(jobs, job.id, timeout=work + 30)
            took = time.time() - enqueued_at
            dead = fleet.dead()
            pids = [p.pid for p in fleet.procs]
            if backend == "sqlite":
                assert _journal_mode(tmp_path / "jobs.db") == "wal"
        finally:
            codes = fleet.stop()
        s = snapshot(ledger)
        report = check(
            enqueued=[job.id],
            jobs=[final],
            stats=await jobs.stats(),
            executions=s.executions,
            outcomes=s.outcomes,
            renewals=s.renewals,
        )
        await jobs.aclose()

    (run,) = s.runs(job.id)
    renewals = s.renewals_of(job.id)
    publish(
        f"heartbeat-long-job-{backend}",
        {
            **report.figures,
            "work_s": work,
            "lease_s": LEASE,
            "enqueue_to_completed_s": took,
            "claim_lease_s": run.locked_until - run.started_at,
            "renewals_applied": sum(1 for r in renewals if r.applied),
            "renewals_refused": sum(1 for r in renewals if r.applied is False),
            "renewals_unanswered": sum(1 for r in renewals if r.applied is None),
            "lease_end_minus_return_s": s.lease_end(run) - (run.finished_at or 0.0),
        },
    )
    report.assert_ok()
    assert dead == [], f"workers exited by themselves: {dead}"
    assert codes == [0, 0], codes
    assert (final.status, final.retries, final.last_error) == (JobStatus.COMPLETED, 0, None)
    assert run.pid in pids
    assert run.finished_at is not None
    assert run.stopped_at is None
    assert run.finished_at - run.started_at >= work
    # The claim's lease alone would have run out long before the handler returned ...
    assert run.locked_until - run.started_at <= LEASE + 0.1
    # ... but it was renewed, by the running worker only, and never refused ...
    assert {r.pid for r in renewals} == {run.pid}
    assert all(r.applied for r in renewals), renewals
    assert sum(1 for r in renewals if r.applied) >= work / LEASE
    # ... so the lease covered the whole run, and the result was written under it.
    assert s.lease_end(run) >= run.finished_at
    (done,) = s.outcomes_of(job.id)
    assert (done.kind, done.applied, done.pid) == ("completed", True, run.pid)


@pytest.mark.fault
@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", STORES)
async def test_a_killed_workers_job_runs_again_about_a_lease_later(
    backend: str, tmp_path: Path
) -> None:
    """SIGKILL a worker in the middle of a renewed 5 s job: the other worker runs it
    again within two leases and a poll (plus slack) of the kill, not inside the killed
    run's lease, and completes it; the killed run recorded no result."""
    work = 5.0
    ledger = new_ledger(tmp_path / "ledger.db")
    with store_url(backend, tmp_path) as url:
        jobs = Jobs(open_store(url))
        fleet = _fleet(url, ledger, tmp_path)
        try:
            job = await jobs.enqueue("chaos", {"seconds": work})
            first = await in_ledger(
                ledger, "the first run renewed twice", renewed_run(job.id, 2), timeout=30
            )
            (victim,) = [p for p in fleet.procs if p.pid == first.pid]
            (survivor,) = [p for p in fleet.procs if p.pid != first.pid]
            victim.send_signal(signal.SIGKILL)
            killed_at = time.time()
            victim.wait()
            second = await in_ledger(
                ledger, "the job's second run", nth_run(job.id, 2), timeout=RERUN_BOUND + 30
            )
            final = await finished(jobs, job.id, timeout=work + 30)
            survivor_alive = survivor.poll() is None
        finally:
            codes = fleet.stop()
        s = snapshot(ledger)
        report = check(
            enqueued=[job.id],
            jobs=[final],
            stats=await jobs.stats(),
            executions=s.executions,
            outcomes=s.outcomes,
            renewals=s.renewals,
            kills=True,
        )
        await jobs.aclose()

    rerun_after = second.started_at - killed_at
    lease_end = s.lease_end(first)
    publish(
        f"heartbeat-kill9-{backend}",
        {
            **report.figures,
            "lease_s": LEASE,
            "kill_after_start_s": killed_at - first.started_at,
            "lease_end_after_kill_s": lease_end - killed_at,
            "rerun_after_kill_s": rerun_after,
            "rerun_bound_s": RERUN_BOUND,
            "rerun_after_lease_end_s": second.started_at - lease_end,
            "worker_exit_codes": codes,
        },
    )
    report.assert_ok()
    assert survivor_alive
    assert codes[fleet.procs.index(victim)] == -signal.SIGKILL
    assert codes[fleet.procs.index(survivor)] == 0
    assert rerun_after < RERUN_BOUND, f"ran again {rerun_after:.2f}s after the kill"
    assert s.lease_violations(job.id) == []
    # The killed run's lease was a renewed one, and renewal stopped with the worker.
    assert lease_end <= killed_at + LEASE + 0.1
    assert len(s.runs(job.id)) == 2
    assert first.finished_at is None  # it never returned ...
    assert first.stopped_at is None  # ... nor was it stopped: it was killed
    assert second.pid == survivor.pid
    assert s.outcomes_of(job.id, first.pid) == []
    (done,) = s.outcomes_of(job.id)
    assert (done.kind, done.applied, done.pid) == ("completed", True, survivor.pid)
    # The killed attempt counts as a failed one, taken back from its expired lease.
    assert (final.status, final.retries) == (JobStatus.COMPLETED, 1)
