"""Cancellation through the worker: a pending job ends at once; a running one is stopped
when its worker next renews its lease, and ends cancelled, never retried."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import attrs
import pytest

from jobs_core import (
    BaseObserver,
    CannotCancel,
    Job,
    Jobs,
    JobsConfig,
    JobStatus,
    MemoryStore,
    Outcome,
)
from jobs_core.testing import FakeClock
from tests.core.conftest import settle, until
from tests.core.test_heartbeat import tick

SECOND = timedelta(seconds=1)


async def _thread_done(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for what a handler thread's return sets off (a thread runs in real time)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the thread's return had no effect in time"
        await asyncio.sleep(0.005)


def config(**overrides: object) -> JobsConfig:
    values: dict[str, object] = {
        "lease_duration": timedelta(seconds=3),
        "lock_duration": timedelta(seconds=60),
        "poll_interval": SECOND,
        "backoff": lambda n: timedelta(seconds=10),
    }
    values.update(overrides)
    return JobsConfig(**values)  # type: ignore[arg-type]


async def test_a_pending_job_is_cancelled_at_once_and_never_runs(
    store: MemoryStore, clock: FakeClock
) -> None:
    jobs = Jobs(store, clock=clock, config=config())
    runs: list[str] = []
    jobs.register("t", lambda job: runs.append(job.id))
    job = await jobs.enqueue("t", None)
    cancelled = await jobs.cancel(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert await jobs.get(job.id) == cancelled
    assert await jobs.run_once() == 0
    assert runs == []
    with pytest.raises(CannotCancel):
        await jobs.cancel(job.id)


async def test_a_running_async_handler_is_stopped_within_a_renewal_and_ends_cancelled(
    store: MemoryStore, clock: FakeClock
) -> None:
    """The cancel request is stored at once; the handler is cancelled at the worker's
    next renewal (within `renew_interval`), the attempt is recorded, and it never runs
    again."""
    finished: list[tuple[Outcome, str | None]] = []

    class Outcomes:
        def finished(
            self, job: Job, outcome: Outcome, duration: timedelta, error: str | None
        ) -> None:
            finished.append((outcome, error))

    jobs = Jobs(store, clock=clock, config=config(), observers=[Outcomes()])  # type: ignore[list-item]
    runs, stopped = [], asyncio.Event()

    async def long(job: Job) -> None:
        runs.append(job.id)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.set()
            raise

    jobs.register("t", long)
    job = await jobs.enqueue("t", None)
    await jobs.start()
    try:
        await until(lambda: bool(runs))
        await settle()  # the heartbeat waits for its first round
        asked = await jobs.cancel(job.id)
        assert (asked.status, asked.cancel_requested) == (JobStatus.PROCESSING, clock.now())
        asked_at = clock.now()
        while not stopped.is_set():
            await tick(clock, 1)
            assert clock.now() - asked_at <= jobs.config.renew_interval, "not stopped in time"
        await until(lambda: store._jobs[job.id].status is JobStatus.CANCELLED)
        await tick(clock, 30)
    finally:
        await jobs.stop(grace=timedelta(0))
    final = await jobs.get(job.id)
    assert (final.status, final.lock_token, final.last_error, final.retries) == (
        JobStatus.CANCELLED,
        None,
        "cancelled",
        0,
    )
    assert [(e.attempt, e.error, e.traceback) for e in final.errors] == [(1, "cancelled", None)]
    assert runs == [job.id], "a cancelled job never runs again"
    assert finished == [(Outcome.CANCELLED, None)]


async def test_a_thread_handler_that_ignores_cancellation_is_abandoned(
    store: MemoryStore, clock: FakeClock
) -> None:
    """A thread cannot be stopped: the job ends cancelled at once, and the thread's
    late return is refused by fencing (the job stays cancelled), as observers hear."""
    refused: list[tuple[str, str]] = []

    class Refusals(BaseObserver):
        def refused(self, job: Job, event: str) -> None:
            refused.append((job.id, event))

    jobs = Jobs(store, clock=clock, config=config(), observers=[Refusals()])
    started, finish = threading.Event(), threading.Event()

    def stubborn(job: Job) -> None:
        started.set()
        finish.wait(timeout=30)

    jobs.register("t", stubborn)
    job = await jobs.enqueue("t", None)
    await jobs.start()
    try:
        await asyncio.to_thread(started.wait, 30)
        await jobs.cancel(job.id)
        await tick(clock, 2)
        await until(lambda: store._jobs[job.id].status is JobStatus.CANCELLED)
        assert refused == []
        finish.set()
        await _thread_done(lambda: bool(refused))
    finally:
        finish.set()
        await jobs.stop(grace=timedelta(0))
    assert (await jobs.get(job.id)).status is JobStatus.CANCELLED
    assert refused == [(job.id, "late completion")]


async def test_a_cancel_that_loses_to_the_completion_leaves_the_job_completed(
    store: MemoryStore, clock: FakeClock
) -> None:
    """A cancel request and a completion race: exactly one wins. If the handler returns
    before its worker hears of the request, the job is completed."""
    jobs = Jobs(store, clock=clock, config=config())
    release, runs = asyncio.Event(), []

    async def handler(job: Job) -> None:
        runs.append(job.id)
        await release.wait()

    jobs.register("t", handler)
    job = await jobs.enqueue("t", None)
    await jobs.start()
    try:
        await until(lambda: bool(runs))
        await jobs.cancel(job.id)
        release.set()  # returns before the next renewal
        await until(lambda: store._jobs[job.id].status is not JobStatus.PROCESSING)
    finally:
        await jobs.stop(grace=timedelta(0))
    assert (await jobs.get(job.id)).status is JobStatus.COMPLETED
    with pytest.raises(CannotCancel):
        await jobs.cancel(job.id)


async def test_a_job_asked_to_cancel_whose_worker_died_is_rescued_as_cancelled(
    store: MemoryStore, clock: FakeClock
) -> None:
    """No worker left to hear the request: when the lease runs out the rescuer ends the
    job cancelled instead of retrying it."""
    jobs = Jobs(store, clock=clock, config=config())
    await jobs.enqueue("gone", None)
    (claimed,) = await store.claim(
        topics=["gone"], now=clock.now(), lease=jobs.config.lease, limit=1
    )
    await jobs.cancel(claimed.id)
    await jobs.start()
    try:
        await tick(clock, 5)
        await until(lambda: store._jobs[claimed.id].status is JobStatus.CANCELLED)
    finally:
        await jobs.stop(grace=timedelta(0))
    final = await jobs.get(claimed.id)
    assert (final.status, final.retries, final.last_error) == (
        JobStatus.CANCELLED,
        0,
        "cancelled (lock expired)",
    )


async def test_a_cancel_request_since_the_last_renewal_survives_a_failed_attempt(
    store: MemoryStore, clock: FakeClock
) -> None:
    """The request is stored, then the handler fails before any renewal: the worker's
    write, decided without the request, is refused (`REQUEST_FIELDS`); the worker reads
    the row, sees the request and decides again: the job ends `cancelled` at once (the
    clock never moves), the attempt recorded with its error, never retried."""
    refused: list[tuple[str, str]] = []
    finished: list[Outcome] = []

    class Events:
        def refused(self, job: Job, event: str) -> None:
            refused.append((job.id, event))

        def finished(
            self, job: Job, outcome: Outcome, duration: timedelta, error: str | None
        ) -> None:
            finished.append(outcome)

    jobs = Jobs(
        store,
        clock=clock,
        config=config(backoff=lambda n: timedelta(0)),
        observers=[Events()],  # type: ignore[list-item]
    )
    runs, fail_now = [], asyncio.Event()

    async def fails_once(job: Job) -> None:
        runs.append(job.id)
        if len(runs) == 1:
            await fail_now.wait()
            raise RuntimeError("broke after the cancel request")

    jobs.register("t", fails_once)
    job = await jobs.enqueue("t", None)
    await jobs.start()
    try:
        await until(lambda: bool(runs))
        asked = await jobs.cancel(job.id)
        fail_now.set()
        await until(lambda: store._jobs[job.id].status is not JobStatus.PROCESSING)
        await settle()
    finally:
        fail_now.set()
        await jobs.stop(grace=timedelta(0))
    assert asked.cancel_requested is not None
    final = await jobs.get(job.id)
    error = "cancelled (RuntimeError: broke after the cancel request)"
    assert (final.status, final.last_error, runs) == (JobStatus.CANCELLED, error, [job.id])
    assert [(e.attempt, e.error) for e in final.errors] == [(1, error)]
    assert final.errors[0].traceback is not None
    assert (refused, finished) == ([], [Outcome.CANCELLED])


async def test_a_refusal_for_a_lost_lease_is_not_decided_again(
    store: MemoryStore, clock: FakeClock
) -> None:
    """A failure refused because another claim holds the job now stays refused: the
    worker reads the row, finds another's token, and writes nothing."""
    refused: list[str] = []

    class Events:
        def refused(self, job: Job, event: str) -> None:
            refused.append(event)

    jobs = Jobs(store, clock=clock, config=config(), observers=[Events()])  # type: ignore[list-item]
    fail_now = asyncio.Event()

    async def fails(job: Job) -> None:
        await fail_now.wait()
        raise RuntimeError("late")

    jobs.register("t", fails)
    job = await jobs.enqueue("t", None)
    await jobs.start()
    try:
        await until(lambda: store._jobs[job.id].status is JobStatus.PROCESSING)
        taken = attrs.evolve(store._jobs[job.id], lock_token="another")
        store._jobs[job.id] = taken  # as a rescue and a new claim would leave it
        fail_now.set()
        await until(lambda: refused == ["retried"])
        await settle()
    finally:
        fail_now.set()
        await jobs.stop(grace=timedelta(0))
    assert store._jobs[job.id] == taken
