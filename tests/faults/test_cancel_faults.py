"""Cancelling running jobs on real stores, with real clocks (a SQLite WAL file, a
PostgreSQL database).

A cancel of a `processing` job only stores a request; the job's worker hears of it at
its next lease renewal and stops the handler. So a cancel sent about when the handler
returns races its completion, across connections (the client's, the workers'): exactly
one must win, for every job. A plain `def` handler cannot be stopped: its job still ends
`cancelled` about one renewal interval after the request, and the thread's late return
is fenced. Runs, renewals and results are in the ledger (`tests.faults.ledger`).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import attrs
import pytest

from jobs_core import (
    BaseObserver,
    CannotCancel,
    Job,
    JobBusy,
    Jobs,
    JobsConfig,
    JobStatus,
    Outcome,
    open_store,
)
from tests.faults.fleet import Fleet, percentile, publish, seed
from tests.faults.ledger import Ledger, LedgerStore, all_jobs, check
from tests.faults.runs import (
    LEASE,
    LOCK,
    POLL,
    SLACK,
    WAIT_EVERY,
    finished,
    in_ledger,
    new_ledger,
    renewed_run,
    snapshot,
    until,
)
from tests.faults.stores import STORES, store_url

#: How often a worker renews (and so hears of a cancel request): a third of the lease.
RENEW = LEASE / 3

# The race: many jobs at once on two worker processes, each cancelled about when its
# handler returns.
RACE_JOBS = 100
#: Each handler sleeps a random time in this range (seconds) ...
WORK = (0.6, 1.4)
#: ... and the client cancels it at a random moment this far from the handler's end:
#: from two renewal intervals before it (surely heard: cancelled) to a little after it
#: (surely too late: completed), through the interval where either may win.
CANCEL_OFFSET = (-2 * RENEW, 0.25)
RACE_ARGS = [
    *("--lease", str(LEASE), "--lock", str(LOCK), "--poll", str(POLL)),
    *("--pool", "50", "--batch", "50"),
]


@attrs.frozen(kw_only=True)
class CancelAttempt:
    """One client cancel: when it was sent relative to the handler's end, and its answer."""

    job_id: str
    offset: float
    sent_at: float
    answered_at: float
    #: "requested" (stored on the running job), "too late" (`CannotCancel`: final
    #: already) or "busy" (`JobBusy`: the job changed under every round).
    answer: str


async def _cancel_at(jobs: Jobs, job_id: str, at: float, offset: float) -> CancelAttempt:
    await asyncio.sleep(max(0.0, at - time.time()))
    sent = time.time()
    try:
        await jobs.cancel(job_id)
        answer = "requested"
    except CannotCancel:
        answer = "too late"
    except JobBusy:
        answer = "busy"
    return CancelAttempt(
        job_id=job_id, offset=offset, sent_at=sent, answered_at=time.time(), answer=answer
    )


async def _cancel_around_the_end(
    jobs: Jobs,
    ledger: Path,
    work: dict[str, float],
    offsets: dict[str, float],
    timeout: float,
) -> dict[str, CancelAttempt]:
    """Cancel each job `offsets[id]` seconds from its handler's end (its start in the
    ledger plus `work[id]`), as the ledger shows the starts; every answer."""
    attempts: dict[str, asyncio.Task[CancelAttempt]] = {}
    deadline = time.monotonic() + timeout
    while len(attempts) < len(work):
        for run in snapshot(ledger).executions:
            if run.job_id not in attempts:
                end = run.started_at + work[run.job_id]
                attempts[run.job_id] = asyncio.create_task(
                    _cancel_at(jobs, run.job_id, end + offsets[run.job_id], offsets[run.job_id])
                )
        if time.monotonic() > deadline:
            for task in attempts.values():
                task.cancel()
            raise AssertionError(f"only {len(attempts)} of {len(work)} jobs started")
        await asyncio.sleep(WAIT_EVERY)
    return {job_id: await task for job_id, task in attempts.items()}


async def _all_final(jobs: Jobs, timeout: float) -> None:
    async def settled() -> bool:
        stats = await jobs.stats()
        return stats.pending + stats.processing == 0

    deadline = time.monotonic() + timeout
    while not await settled():
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs still running after {timeout:.0f}s: {await jobs.stats()}")
        await asyncio.sleep(WAIT_EVERY)


def _fleet(url: str, ledger: Path, tmp: Path, args: list[str]) -> Fleet:
    return Fleet(db=url, ledger=ledger, logs=tmp / "logs", size=2, args=args).start_ready()


@pytest.mark.fault
@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", STORES)
async def test_a_cancel_racing_the_completion_has_exactly_one_winner(
    backend: str, tmp_path: Path
) -> None:
    """100 jobs on two worker processes, each cancelled by a client at a random moment
    around its handler's end: every job ends `completed` (the handler returned before
    its worker heard of the request) or `cancelled` (the handler was stopped and nothing
    else was written), ran once, was never retried; both sides of the race happen."""
    rng = random.Random(seed())
    ledger = new_ledger(tmp_path / "ledger.db")
    with store_url(backend, tmp_path) as url:
        jobs = Jobs(open_store(url))  # the client: it runs no worker and no rescuer
        fleet = _fleet(url, ledger, tmp_path, RACE_ARGS)
        try:
            seconds = [rng.uniform(*WORK) for _ in range(RACE_JOBS)]
            made = await jobs.enqueue_many("chaos", [{"seconds": w} for w in seconds])
            work = {job.id: w for job, w in zip(made, seconds, strict=True)}
            offsets = {job.id: rng.uniform(*CANCEL_OFFSET) for job in made}
            began = time.time()
            attempts = await _cancel_around_the_end(jobs, ledger, work, offsets, timeout=30)
            await _all_final(jobs, timeout=30)
            took = time.time() - began
            final = await all_jobs(jobs.store)
            stats = await jobs.stats()
            dead = fleet.dead()
        finally:
            codes = fleet.stop()
        s = snapshot(ledger)
        report = check(
            enqueued=list(work),
            jobs=final,
            stats=stats,
            executions=s.executions,
            outcomes=s.outcomes,
            renewals=s.renewals,
        )
        await jobs.aclose()

    bad: list[str] = []
    stop_after_request: list[float] = []
    for job in final:
        attempt = attempts[job.id]
        runs = s.runs(job.id)
        results = [(o.kind, o.applied) for o in s.outcomes_of(job.id)]
        seen = f"{job.id[:8]} {job.status.value} {attempt} runs={runs} results={results}"
        if len(runs) != 1 or job.retries != 0 or job.lock_token is not None:
            bad.append(f"ran {len(runs)} times, retries={job.retries}: {seen}")
            continue
        (run,) = runs
        if job.status is JobStatus.COMPLETED:
            if (
                run.finished_at is None
                or run.stopped_at is not None
                or results != [("completed", True)]
                or job.last_error is not None
            ):
                bad.append(f"completed, but not by its one returned run: {seen}")
        elif job.status is JobStatus.CANCELLED:
            if (
                attempt.answer != "requested"
                or run.stopped_at is None
                or run.finished_at is not None
                or results != [("cancelled", True)]
                or job.last_error != "cancelled"
            ):
                bad.append(f"cancelled, but not by a stop at its request: {seen}")
            else:
                stop_after_request.append(run.stopped_at - attempt.sent_at)
        else:
            bad.append(f"neither completed nor cancelled: {seen}")

    by_status = Counter(job.status for job in final)
    answers = Counter(a.answer for a in attempts.values())
    lost_requests = [
        j for j in final if j.status is JobStatus.COMPLETED and attempts[j.id].answer == "requested"
    ]
    cancelled_offsets = [attempts[j.id].offset for j in final if j.status is JobStatus.CANCELLED]
    completed_offsets = [attempts[j.id].offset for j in final if j.status is JobStatus.COMPLETED]
    publish(
        f"cancel-race-{backend}",
        {
            **report.figures,
            "lease_s": LEASE,
            "renew_interval_s": RENEW,
            "work_s": WORK,
            "cancel_offset_s": CANCEL_OFFSET,
            "enqueue_to_all_final_s": took,
            "won_by_completion": by_status[JobStatus.COMPLETED],
            "won_by_cancel": by_status[JobStatus.CANCELLED],
            "cancel_answers": dict(answers),
            "completed_though_the_request_was_stored": len(lost_requests),
            "of_which_the_row_kept_cancel_requested": sum(
                1 for j in lost_requests if j.cancel_requested is not None
            ),
            "latest_offset_cancelled_s": max(cancelled_offsets, default=None),
            "earliest_offset_completed_s": min(completed_offsets, default=None),
            "stop_after_request_p50_s": percentile(stop_after_request, 50),
            "stop_after_request_max_s": max(stop_after_request, default=0.0),
            "inconsistent_jobs": len(bad),
            "worker_exit_codes": codes,
        },
    )
    report.assert_ok()
    assert bad == [], "\n".join(bad[:20])
    assert dead == [], f"workers exited by themselves: {dead}"
    assert codes == [0, 0], codes
    assert stats.completed + stats.cancelled == RACE_JOBS, stats
    assert by_status[JobStatus.COMPLETED] > 0, "no cancel came too late: no race"
    assert by_status[JobStatus.CANCELLED] > 0, "no cancel was heard in time: no race"
    # A stop waits for the worker's next renewal at most (plus a loaded machine's slack).
    assert all(0 <= d <= RENEW + SLACK for d in stop_after_request), stop_after_request


class _Heard(BaseObserver):
    """What the worker's observers hear: written outcomes and refused results."""

    def __init__(self) -> None:
        self.finished_: list[tuple[str, Outcome, float]] = []
        self.refused_: list[tuple[str, str, float]] = []

    def finished(self, job: Job, outcome: Outcome, duration: timedelta, error: str | None) -> None:
        self.finished_.append((job.id, outcome, time.time()))

    def refused(self, job: Job, event: str) -> None:
        self.refused_.append((job.id, event, time.time()))


LEASED = JobsConfig(
    lease_duration=timedelta(seconds=LEASE),
    lock_duration=timedelta(seconds=LOCK),
    poll_interval=timedelta(seconds=POLL),
)


@pytest.mark.fault
@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", STORES)
async def test_a_thread_handler_that_ignores_its_cancel_is_abandoned_and_fenced(
    backend: str, tmp_path: Path
) -> None:
    """A `def` handler that sleeps on past its cancel request: the job ends `cancelled`
    within about a renewal interval, stays so while the thread runs on for over a lease,
    is never run again, and the thread's late return is refused ("late completion")."""
    ledger_path = new_ledger(tmp_path / "ledger.db")
    ledger = Ledger(ledger_path)
    started, release, returned = threading.Event(), threading.Event(), threading.Event()

    def stubborn(job: Job) -> None:
        own = Ledger(ledger_path)  # a SQLite connection of this thread's own
        row = own.started(job)
        started.set()
        limit = time.monotonic() + 60
        while not release.is_set() and time.monotonic() < limit:
            time.sleep(0.05)  # work that never looks at a cancel request
        own.finished(row)
        own.close()
        returned.set()

    heard = _Heard()
    with store_url(backend, tmp_path) as url:
        client = Jobs(open_store(url))
        worker = Jobs(LedgerStore(open_store(url), ledger), config=LEASED, observers=[heard])
        worker.register("stubborn", stubborn)
        await worker.start()
        try:
            job = await client.enqueue("stubborn", None)
            await until("the handler started", lambda: started.is_set() or None, timeout=30)
            await in_ledger(ledger_path, "a renewal", renewed_run(job.id, 1), timeout=10)
            asked_at = time.time()
            asked = await client.cancel(job.id)
            cancelled = await finished(client, job.id, timeout=RENEW + SLACK + 10)
            cancelled_at = time.time()
            ran_on = not returned.is_set()
            # The thread runs on for a lease past the end of the job's last lease: had
            # the job stayed claimable, the worker (polling every POLL) or a rescuer
            # would have run it again meanwhile.
            so_far = snapshot(ledger_path)
            last_lease_end = so_far.lease_end(so_far.runs(job.id)[0])
            hold_until = max(last_lease_end, cancelled_at) + LEASE + 2 * POLL
            seen_while_running = set()
            while time.time() < hold_until:
                seen_while_running.add((await client.get(job.id)).status)
                await asyncio.sleep(WAIT_EVERY)
            still_running = not returned.is_set()
            release.set()
            await until("the thread returned", lambda: returned.is_set() or None, timeout=10)
            await until("the late completion", lambda: heard.refused_ or None, timeout=10)
            final = await client.get(job.id)
            stats = await client.stats()
        finally:
            release.set()
            await worker.stop()
        s = snapshot(ledger_path)
        report = check(
            enqueued=[job.id],
            jobs=[final],
            stats=stats,
            executions=s.executions,
            outcomes=s.outcomes,
            renewals=s.renewals,
        )
        await worker.aclose()
        await client.aclose()
    ledger.close()

    (run,) = s.runs(job.id)
    (done,) = heard.finished_
    publish(
        f"cancel-thread-{backend}",
        {
            **report.figures,
            "lease_s": LEASE,
            "renew_interval_s": RENEW,
            "request_to_cancelled_s": cancelled_at - asked_at,
            "request_to_cancel_written_s": done[2] - asked_at,
            "thread_ran_on_after_cancelled_s": (run.finished_at or 0.0) - cancelled_at,
            "refused": [event for _, event, _ in heard.refused_],
            "renewals_after_the_cancel": sum(
                1 for r in s.renewals_of(job.id) if r.sent_at > done[2]
            ),
        },
    )
    report.assert_ok()
    assert (asked.status, asked.cancel_requested is not None) == (JobStatus.PROCESSING, True)
    assert (cancelled.status, cancelled.retries, cancelled.last_error) == (
        JobStatus.CANCELLED,
        0,
        "cancelled",
    )
    assert ran_on, "the thread returned before the job was cancelled: nothing was tested"
    assert still_running
    assert done[:2] == (job.id, Outcome.CANCELLED)
    assert done[2] - asked_at <= RENEW + SLACK, "not cancelled about a renewal after the request"
    assert seen_while_running == {JobStatus.CANCELLED}
    assert final == cancelled  # the late return changed nothing
    # One run, never stopped (a thread cannot be), returned well after the job ended ...
    assert run.stopped_at is None
    assert run.finished_at is not None
    assert run.finished_at >= hold_until
    # ... and its completion was refused: by the worker's own clock (the claim's lease
    # was long over), else by the store; only the cancel was written.
    assert [(job.id, "late completion")] == [(i, e) for i, e, _ in heard.refused_]
    assert [(o.kind, o.applied) for o in s.outcomes_of(job.id) if o.applied] == [
        ("cancelled", True)
    ]
    assert all(not o.applied for o in s.outcomes_of(job.id) if o.kind == "completed")
    # The abandoned thread kept no lease: nothing was renewed once the job was cancelled.
    assert all(r.sent_at <= done[2] for r in s.renewals_of(job.id))


@pytest.mark.fault
@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", STORES)
async def test_a_cancel_request_since_the_last_renewal_survives_a_failed_attempt(
    backend: str, tmp_path: Path
) -> None:
    """The request is stored while the handler runs, the handler fails before the next
    renewal: the worker's write, decided without the request, is refused; the worker
    reads the row, sees the request and writes `cancelled` (never retried)."""
    runs: list[str] = []
    fail_now = asyncio.Event()

    async def fails_once(job: Job) -> None:
        runs.append(job.id)
        if len(runs) == 1:
            await asyncio.wait_for(fail_now.wait(), 30)
            raise RuntimeError("broke after the cancel request")

    config = attrs.evolve(
        LEASED, lease_duration=timedelta(seconds=3), backoff=lambda n: timedelta(0)
    )
    with store_url(backend, tmp_path) as url:
        client = Jobs(open_store(url))
        worker = Jobs(open_store(url), config=config)  # renews every 1 s
        worker.register("fails", fails_once)
        await worker.start()
        try:
            job = await client.enqueue("fails", None)
            await until("the handler started", lambda: runs or None, timeout=30)
            asked = await client.cancel(job.id)
            fail_now.set()
            final = await finished(client, job.id, timeout=20)
        finally:
            fail_now.set()
            await worker.aclose()
            await client.aclose()
    assert asked.cancel_requested is not None
    assert (final.status, len(runs)) == (JobStatus.CANCELLED, 1), (final, runs)
