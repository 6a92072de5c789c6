"""Heartbeats: a short crash-recovery lease, renewed while a long handler runs.

Driven by a `FakeClock` in steps of a second, so the worker's renewal rounds run as they
would in real time; the lease rescuer runs too (it is started with the worker).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from datetime import timedelta

import attrs
import pytest

from jobs_core import (
    LOCK_EXPIRED,
    BaseObserver,
    EnqueueOptions,
    InvalidOptions,
    Job,
    Jobs,
    JobsConfig,
    JobStatus,
    JobUpdate,
    MemoryStore,
    StoreUnavailable,
)
from jobs_core import _transitions as transitions
from jobs_core.testing import FakeClock
from tests.core.conftest import settle, until

LEASE = timedelta(seconds=3)
SECOND = timedelta(seconds=1)


def config(**overrides: object) -> JobsConfig:
    values: dict[str, object] = {
        "lease_duration": LEASE,
        "lock_duration": timedelta(seconds=30),
        "poll_interval": SECOND,
        "backoff": lambda n: timedelta(seconds=10),
    }
    values.update(overrides)
    return JobsConfig(**values)  # type: ignore[arg-type]


class Refusals(BaseObserver):
    def __init__(self) -> None:
        self.refusals: list[tuple[str, str]] = []
        self.store_errors: list[str] = []
        self.recovered: list[str] = []

    def refused(self, job: Job, event: str) -> None:
        self.refusals.append((job.id, event))

    def store_error(self, operation: str, error: BaseException, retry_in: object) -> None:
        self.store_errors.append(operation)

    def store_recovered(self, operation: str) -> None:
        self.recovered.append(operation)


class CountingStore(MemoryStore):
    """Counts renewal calls, and can fail them or leave them unanswered."""

    def __init__(self) -> None:
        super().__init__()
        self.renewals: list[int] = []
        self.failing = False
        self.hanging = False
        self.abandoned = 0

    async def renew(self, renewals: Sequence[JobUpdate]) -> Sequence[Job | None]:
        if self.failing:
            raise StoreUnavailable("down for the test")
        if self.hanging:  # as over a partitioned link: no answer, no error
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.abandoned += 1
                raise
        self.renewals.append(len(renewals))
        return await super().renew(renewals)


async def tick(clock: FakeClock, seconds: int) -> None:
    """Advance the clock a second at a time, letting every task run after each step."""
    for _ in range(seconds):
        clock.advance(SECOND)
        await settle()


@pytest.fixture
def counting() -> CountingStore:
    return CountingStore()


async def test_a_job_longer_than_its_lease_completes_on_its_first_attempt(
    counting: CountingStore, clock: FakeClock
) -> None:
    """A 10 s job with a 3 s lease: renewed about every second, never rescued, never
    run twice; each renewal takes a new token and the lease end moves on."""
    jobs = Jobs(counting, clock=clock, config=config())
    release, runs = asyncio.Event(), []

    async def long(job: Job) -> None:
        runs.append(job.id)
        await release.wait()

    jobs.register("long", long)
    job = await jobs.enqueue("long", None)
    await jobs.start()
    try:
        await until(lambda: bool(runs))
        tokens = set()
        for _ in range(10):
            await tick(clock, 1)
            stored = await jobs.get(job.id)
            assert stored.status is JobStatus.PROCESSING
            assert stored.locked_until is not None
            assert stored.locked_until >= clock.now(), "the lease ran out while the job ran"
            tokens.add(stored.lock_token)
        release.set()
        await until(lambda: counting._jobs[job.id].status is JobStatus.COMPLETED)
    finally:
        await jobs.stop(grace=timedelta(0))
    done = await jobs.get(job.id)
    assert (done.status, done.retries, done.last_error, runs) == (
        JobStatus.COMPLETED,
        0,
        None,
        [job.id],
    )
    assert len(tokens) >= 5, "each renewal takes a new lock token"
    assert 5 <= len(counting.renewals) <= 12


async def test_jobs_that_end_within_half_an_interval_are_never_renewed(
    counting: CountingStore, clock: FakeClock
) -> None:
    """The drain's path has no renewal writes: a job is first renewed (or checked in)
    half a renewal interval after its claim, and short jobs are long gone by then."""
    jobs = Jobs(counting, clock=clock, config=config(lease_duration=timedelta(minutes=1)))

    async def quick(job: Job) -> None:
        return None

    jobs.register("q", quick)
    await jobs.enqueue_many("q", list(range(50)))
    await jobs.start()
    try:
        await until(lambda: all(j.status is JobStatus.COMPLETED for j in counting._jobs.values()))
        await tick(clock, 30)
    finally:
        await jobs.stop(grace=timedelta(0))
    assert counting.renewals == []


async def test_a_job_whose_lease_covers_its_timeout_still_checks_in(
    counting: CountingStore, clock: FakeClock
) -> None:
    """With a lease as long as the timeout no renewal is needed to keep the job, but the
    worker still renews it every interval: that is how it hears of a cancel request."""
    jobs = Jobs(counting, clock=clock, config=config(lease_duration=timedelta(minutes=1)))
    release = asyncio.Event()

    async def waits(job: Job) -> None:
        await release.wait()

    jobs.register("w", waits)
    await jobs.enqueue("w", None)
    await jobs.start()
    try:
        await until(lambda: jobs._worker.in_flight == 1)
        await settle()
        await tick(clock, 25)
        release.set()
        await until(lambda: all(j.status is JobStatus.COMPLETED for j in counting._jobs.values()))
    finally:
        await jobs.stop(grace=timedelta(0))
    assert 2 <= len(counting.renewals) <= 3  # every 10 s (a third of the 30 s lease)


async def test_renewal_stops_at_the_execution_timeout(
    counting: CountingStore, clock: FakeClock
) -> None:
    """A hung handler cannot hold its job: no renewal reaches past its timeout and
    margin, and at the timeout the attempt fails as usual."""
    timeout = timedelta(seconds=8)
    jobs = Jobs(counting, clock=clock, config=config(lock_duration=timeout))

    async def hang(job: Job) -> None:
        await asyncio.Event().wait()

    jobs.register("hang", hang)
    job = await jobs.enqueue("hang", None)
    await jobs.start()
    try:
        await until(lambda: jobs._worker.in_flight == 1)
        await settle()  # the handler has started
        began = clock.now()
        latest = began
        for _ in range(8):
            await tick(clock, 1)
            stored = counting._jobs[job.id]
            if stored.locked_until is not None:
                latest = max(latest, stored.locked_until)
        await until(lambda: counting._jobs[job.id].status is JobStatus.PENDING)
    finally:
        await jobs.stop(grace=timedelta(0))
    assert latest <= began + timeout + jobs.config.lock_margin
    failed = await jobs.get(job.id)
    assert (failed.retries, failed.last_error) == (1, "timed out after 8s (lock_duration)")


async def test_a_lost_lease_stops_an_async_handler_and_records_nothing(
    counting: CountingStore, clock: FakeClock
) -> None:
    """Someone else took the job (here: a write under its token that moved it back to
    pending): the next renewal matches no row, the handler is cancelled, and the
    worker writes nothing over the other writer's state."""
    refusals = Refusals()
    jobs = Jobs(counting, clock=clock, config=config(), observers=[refusals])
    cancelled = asyncio.Event()

    async def long(job: Job) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    jobs.register("long", long)
    job = await jobs.enqueue("long", None)
    await jobs.start()
    try:
        await until(lambda: jobs._worker.in_flight == 1)
        running = counting._jobs[job.id]
        taken = attrs.evolve(
            running,
            status=JobStatus.PENDING,
            locked_until=None,
            lock_token=None,
            run_at=clock.now() + timedelta(hours=1),
            last_error="taken by the test",
        )
        assert await counting.update([transitions.update(running, taken)]) == [True]
        await tick(clock, 3)
        await until(cancelled.is_set)
        await until(lambda: jobs._worker.in_flight == 0)
        await settle()
    finally:
        await jobs.stop(grace=timedelta(0))
    assert counting._jobs[job.id] == taken
    assert refusals.refusals == [(job.id, "renew")]


async def test_a_lost_lease_abandons_a_thread_handler_and_its_late_result_is_dropped(
    counting: CountingStore, clock: FakeClock
) -> None:
    """A thread cannot be cancelled: it is abandoned, and when it returns nothing is
    written (the job keeps what the other writer stored)."""
    jobs = Jobs(counting, clock=clock, config=config())
    started, finish = threading.Event(), threading.Event()

    def blocking(job: Job) -> None:
        started.set()
        finish.wait(timeout=30)

    jobs.register("thread", blocking)
    job = await jobs.enqueue("thread", None)
    await jobs.start()
    try:
        await asyncio.to_thread(started.wait, 30)
        running = counting._jobs[job.id]
        taken = attrs.evolve(running, lock_token="someone-else")
        assert await counting.update([transitions.update(running, taken)]) == [True]
        await tick(clock, 3)
        await until(lambda: jobs._worker.in_flight == 0)
        finish.set()
        await settle()
    finally:
        finish.set()
        await jobs.stop(grace=timedelta(0))
    assert counting._jobs[job.id] == taken


async def test_failing_renewals_are_reported_and_a_lease_that_ran_out_is_given_up(
    counting: CountingStore, clock: FakeClock
) -> None:
    """While the store refuses renewals the worker reports them and tries again; once
    its own clock says the lease ended, the handler is stopped (a rescuer may run the
    job elsewhere), and when the store is back the renewals resume for other jobs."""
    refusals = Refusals()
    jobs = Jobs(counting, clock=clock, config=config(), observers=[refusals])

    async def long(job: Job) -> None:
        await asyncio.Event().wait()

    jobs.register("long", long)
    job = await jobs.enqueue("long", None)
    await jobs.start()
    try:
        await until(lambda: jobs._worker.in_flight == 1)
        counting.failing = True
        await tick(clock, 5)
        await until(lambda: jobs._worker.in_flight == 0)
        counting.failing = False
        await tick(clock, 2)
    finally:
        await jobs.stop(grace=timedelta(0))
    assert "renew" in refusals.store_errors
    assert (job.id, "renew") in refusals.refusals
    assert refusals.recovered.count("renew") <= 1


async def test_an_unanswered_renewal_stops_the_handler_when_the_lease_ends(
    counting: CountingStore, clock: FakeClock
) -> None:
    """A renewal that hangs (a partitioned link: no answer, no error) is given up when
    the lease it renews ends by the worker's clock: the handler is stopped then, not
    whenever the call returns, since a rescuer may already run the job elsewhere, and
    nothing is recorded for it."""
    refusals = Refusals()
    jobs = Jobs(counting, clock=clock, config=config(), observers=[refusals])
    stopped: list[object] = []

    async def long(job: Job) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.append(clock.now())
            raise

    jobs.register("long", long)
    job = await jobs.enqueue("long", None)
    await jobs.start()
    try:
        await until(lambda: jobs._worker.in_flight == 1)
        counting.hanging = True
        lease_end = counting._jobs[job.id].locked_until
        assert lease_end is not None
        await tick(clock, 4)
        await until(lambda: jobs._worker.in_flight == 0)
        await settle()
    finally:
        await jobs.stop(grace=timedelta(0))
    assert stopped == [lease_end]
    assert counting.abandoned == 1
    assert (job.id, "renew") in refusals.refusals
    assert "renew" in refusals.store_errors
    rescued = counting._jobs[job.id]  # the rescuer's write, none of the worker's
    assert (rescued.status, rescued.retries, rescued.last_error) == (
        JobStatus.PENDING,
        1,
        LOCK_EXPIRED,
    )


async def test_a_topic_registers_its_own_timeout_and_max_retries(
    store: MemoryStore, clock: FakeClock
) -> None:
    """`register(topic, handler, timeout=, max_retries=)` (and the decorator) override
    the config for that topic only; a job's own `max_retries` still wins."""
    jobs = Jobs(store, clock=clock, config=config(lock_duration=timedelta(minutes=5)))

    @jobs.handler("slow", timeout=timedelta(seconds=4), max_retries=0)
    async def slow(job: Job) -> None:
        await asyncio.Event().wait()

    jobs.register("other", slow)
    own = await jobs.enqueue("slow", None)
    chosen = await jobs.enqueue_with_options("slow", None, EnqueueOptions(max_retries=2))
    other = await jobs.enqueue("other", None)
    assert (own.max_retries, chosen.max_retries, other.max_retries) == (0, 2, 3)
    await jobs.start()
    try:
        await until(lambda: jobs._worker.in_flight == 3)
        await tick(clock, 5)
        await until(lambda: store._jobs[own.id].status is JobStatus.FAILED)
    finally:
        await jobs.stop(grace=timedelta(0))
    failed = await jobs.get(own.id)
    assert failed.last_error == "timed out after 4s (the timeout of topic 'slow')"
    assert (await jobs.get(other.id)).retries == 0, "the other topic keeps the config's timeout"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": "soon"}, "timeout must be a duration"),
        ({"timeout": timedelta(0)}, "timeout must be positive"),
        ({"max_retries": -1}, "max_retries must be between"),
    ],
)
def test_bad_topic_settings_are_refused_and_nothing_is_registered(
    store: MemoryStore, options: dict[str, object], message: str
) -> None:
    jobs = Jobs(store)
    with pytest.raises(InvalidOptions, match=message):
        jobs.register("t", lambda job: None, **options)  # type: ignore[arg-type]
    assert jobs.topics == frozenset()


def test_the_lease_is_the_shorter_of_lease_duration_and_the_timeout() -> None:
    """No renewal is ever needed when the timeout ends first; `lease_duration` must be
    a positive duration like every other."""
    assert JobsConfig().lease == timedelta(seconds=30)
    short = JobsConfig(lock_duration=timedelta(seconds=5))
    assert short.lease == timedelta(seconds=6)
    assert JobsConfig().renew_interval == timedelta(seconds=10)
    with pytest.raises(InvalidOptions, match="lease_duration must be a duration"):
        JobsConfig(lease_duration=[30])  # type: ignore[arg-type]
