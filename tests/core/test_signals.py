"""Handler outcomes beyond return and raise: `Snooze`, `Retry(after=)` and `GiveUp`."""

from __future__ import annotations

import threading
from datetime import timedelta

import attrs
import pytest

from jobs_core import (
    MAX_SNOOZES,
    EnqueueOptions,
    GiveUp,
    InvalidOptions,
    Job,
    Jobs,
    JobsConfig,
    JobStatus,
    MemoryStore,
    Outcome,
    Retry,
    Snooze,
)
from jobs_core import _transitions as tr
from jobs_core.testing import FakeClock
from tests.core.conftest import T0 as _T0

BACKOFF = timedelta(seconds=10)


def make_jobs(store: MemoryStore, clock: FakeClock, seen: list[Outcome]) -> Jobs:
    class Outcomes:
        def finished(
            self, job: Job, outcome: Outcome, duration: timedelta, error: str | None
        ) -> None:
            seen.append(outcome)

    config = JobsConfig(backoff=lambda n: BACKOFF)
    return Jobs(store, clock=clock, config=config, observers=[Outcomes()])  # type: ignore[list-item]


@pytest.mark.parametrize("threaded", [False, True])
async def test_snooze_runs_the_job_again_later_without_counting_an_attempt(
    store: MemoryStore, clock: FakeClock, threaded: bool
) -> None:
    seen: list[Outcome] = []
    jobs = make_jobs(store, clock, seen)
    runs: list[int] = []

    async def later(job: Job) -> None:
        runs.append(job.snoozes)
        if job.snoozes < 2:
            raise Snooze(timedelta(minutes=5))

    def later_in_a_thread(job: Job) -> None:
        assert threading.current_thread() is not threading.main_thread()
        runs.append(job.snoozes)
        if job.snoozes < 2:
            raise Snooze(timedelta(minutes=5))

    jobs.register("t", later_in_a_thread if threaded else later)
    job = await jobs.enqueue("t", None)
    assert await jobs.run_once() == 1
    snoozed = await jobs.get(job.id)
    assert (snoozed.status, snoozed.retries, snoozed.snoozes, snoozed.last_error) == (
        JobStatus.PENDING,
        0,
        1,
        None,
    )
    assert snoozed.run_at == clock.now() + timedelta(minutes=5)
    assert await jobs.run_once() == 0, "not due before its delay"
    for _ in range(2):
        clock.advance(timedelta(minutes=5))
        assert await jobs.run_once() == 1
    done = await jobs.get(job.id)
    assert (done.status, done.retries, done.snoozes) == (JobStatus.COMPLETED, 0, 2)
    assert runs == [0, 1, 2]
    assert seen == [Outcome.SNOOZED, Outcome.SNOOZED, Outcome.COMPLETED]


async def test_retry_after_is_a_counted_attempt_with_the_handlers_delay(
    store: MemoryStore, clock: FakeClock
) -> None:
    seen: list[Outcome] = []
    jobs = make_jobs(store, clock, seen)

    async def throttled(job: Job) -> None:
        raise Retry("429 Too Many Requests", after=timedelta(seconds=42))

    jobs.register("t", throttled)
    job = await jobs.enqueue_with_options("t", None, EnqueueOptions(max_retries=1))
    assert await jobs.run_once() == 1
    retried = await jobs.get(job.id)
    assert (retried.status, retried.retries, retried.last_error) == (
        JobStatus.PENDING,
        1,
        "429 Too Many Requests",
    )
    assert retried.run_at == clock.now() + timedelta(seconds=42), "not the config's backoff"
    clock.advance(timedelta(seconds=42))
    assert await jobs.run_once() == 1
    assert (await jobs.get(job.id)).status is JobStatus.FAILED, "retries still run out"
    assert seen == [Outcome.RETRIED, Outcome.FAILED]


async def test_retry_without_a_delay_keeps_the_backoff(
    store: MemoryStore, clock: FakeClock
) -> None:
    jobs = make_jobs(store, clock, [])

    async def again(job: Job) -> None:
        raise Retry()

    jobs.register("t", again)
    job = await jobs.enqueue("t", None)
    await jobs.run_once()
    retried = await jobs.get(job.id)
    assert (retried.run_at, retried.last_error) == (clock.now() + BACKOFF, "retry requested")


async def test_give_up_fails_the_job_whatever_retries_remain(
    store: MemoryStore, clock: FakeClock
) -> None:
    seen: list[Outcome] = []
    jobs = make_jobs(store, clock, seen)

    async def hopeless(job: Job) -> None:
        raise GiveUp("the account was deleted")

    jobs.register("t", hopeless)
    job = await jobs.enqueue_with_options("t", None, EnqueueOptions(max_retries=5))
    assert await jobs.run_once() == 1
    failed = await jobs.get(job.id)
    assert (failed.status, failed.retries, failed.last_error) == (
        JobStatus.FAILED,
        0,
        "the account was deleted",
    )
    assert seen == [Outcome.FAILED]
    assert (await jobs.requeue(job.id)).status is JobStatus.PENDING, "it may be requeued"


def test_a_job_that_snoozes_too_often_fails() -> None:
    """The cap keeps a handler looping on Snooze from holding its job forever."""
    job = tr.new_job(
        job_id="0190a000-0000-7000-8000-000000000009",
        topic="t",
        payload=None,
        run_at=_T0,
        max_retries=3,
        now=_T0,
    )
    claimed = tr.claim(job, now=_T0, lease=timedelta(minutes=1), token="tok")
    worn = attrs.evolve(claimed, snoozes=MAX_SNOOZES)
    after = tr.snooze(worn, token="tok", now=_T0, delay=timedelta(seconds=1))
    assert (after.status, after.last_error) == (
        JobStatus.FAILED,
        f"snoozed {MAX_SNOOZES} times; giving up",
    )
    once_less = tr.snooze(
        attrs.evolve(claimed, snoozes=MAX_SNOOZES - 1), token="tok", now=_T0, delay=timedelta(0)
    )
    assert (once_less.status, once_less.snoozes, once_less.run_at) == (
        JobStatus.PENDING,
        MAX_SNOOZES,
        _T0,
    )


def test_requeue_resets_the_snooze_count() -> None:
    claimed = tr.claim(_pending(), now=_T0, lease=timedelta(minutes=1), token="tok")
    failed = tr.give_up(attrs.evolve(claimed, snoozes=7), token="tok", error="x", now=_T0)
    assert (failed.status, failed.snoozes) == (JobStatus.FAILED, 7)
    assert tr.requeue(failed, now=_T0).snoozes == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Snooze("soon"), "Snooze delay must be a duration"),
        (lambda: Snooze(timedelta(seconds=-1)), "Snooze delay must be positive"),
        (lambda: Retry(after=timedelta(seconds=-1)), "Retry after must be positive"),
    ],
)
def test_bad_delays_are_refused_when_raised(make: object, message: str) -> None:
    with pytest.raises(InvalidOptions, match=message):
        make()  # type: ignore[operator]


def _pending() -> Job:
    return tr.new_job(
        job_id="0190a000-0000-7000-8000-00000000000a",
        topic="t",
        payload=None,
        run_at=_T0,
        max_retries=3,
        now=_T0,
    )
