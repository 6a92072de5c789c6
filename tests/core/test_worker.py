"""The worker, driven by a `FakeClock`: retries, timeouts, rescue, limits, stop, wake-up."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import timedelta

import pytest

from jobs_core import (
    LOCK_EXPIRED,
    EnqueueOptions,
    Job,
    Jobs,
    JobsConfig,
    JobStatus,
    MemoryStore,
    StoreUnavailable,
)
from jobs_core.testing import FakeClock
from tests.core.conftest import T0, settle, until

LOCK = timedelta(minutes=5)


def config(**overrides: object) -> JobsConfig:
    # The lease covers each test's execution timeout, as the seed's single lock did, so
    # these tests see no renewals; tests/core/test_heartbeat.py covers those.
    values: dict[str, object] = {
        "lease_duration": timedelta(days=1),
        "backoff": lambda n: timedelta(seconds=10 * 2**n),
    }
    values.update(overrides)
    return JobsConfig(**values)  # type: ignore[arg-type]


async def test_handler_gets_the_claimed_job(jobs: Jobs) -> None:
    """The job a handler sees is processing, with its lease and token set."""
    seen: list[Job] = []
    jobs.register("t", seen.append)
    await jobs.enqueue("t", {"x": 1})
    assert await jobs.run_once() == 1
    (job,) = seen
    assert job.status is JobStatus.PROCESSING
    assert job.locked_until == T0 + jobs.config.lease
    assert job.lock_token is not None


async def test_async_and_sync_handlers_both_run(jobs: Jobs) -> None:
    """`async def` runs on the loop; plain `def` runs on another thread."""
    threads: dict[str, int] = {}

    async def on_loop(job: Job) -> None:
        threads["async"] = threading.get_ident()

    def in_thread(job: Job) -> None:
        threads["sync"] = threading.get_ident()

    jobs.register("a", on_loop)
    jobs.register("s", in_thread)
    await jobs.enqueue("a", None)
    await jobs.enqueue("s", None)
    assert await jobs.run_once() == 2
    assert threads["async"] == threading.get_ident() != threads["sync"]
    assert (await jobs.stats()).completed == 2


async def test_retries_with_backoff_then_failed(store: MemoryStore, clock: FakeClock) -> None:
    """Each failure waits backoff(retries) before the next run; 1 + max_retries runs in all."""
    jobs = Jobs(store, clock=clock, config=config())
    runs: list[object] = []

    def boom(job: Job) -> None:
        runs.append(clock.now())
        raise ValueError(f"attempt {job.retries}")

    jobs.register("t", boom)
    job = await jobs.enqueue_with_options("t", None, EnqueueOptions(max_retries=2))
    assert await jobs.run_once() == 1
    after = await jobs.get(job.id)
    assert (after.status, after.retries, after.run_at) == (
        JobStatus.PENDING,
        1,
        T0 + timedelta(seconds=10),
    )
    clock.advance(timedelta(seconds=9))
    assert await jobs.run_once() == 0  # not due yet
    clock.advance(timedelta(seconds=1))
    assert await jobs.run_once() == 1
    assert (await jobs.get(job.id)).run_at == clock.now() + timedelta(seconds=20)
    clock.advance(timedelta(seconds=20))
    assert await jobs.run_once() == 1
    final = await jobs.get(job.id)
    assert (final.status, final.retries, final.last_error) == (
        JobStatus.FAILED,
        2,
        "ValueError: attempt 2",
    )
    assert len(runs) == 3
    clock.advance(timedelta(days=1))
    assert await jobs.run_once() == 0


async def test_async_handler_is_cancelled_at_the_timeout(
    store: MemoryStore, clock: FakeClock
) -> None:
    """An async handler overrunning lock_duration is cancelled and the attempt fails."""
    jobs = Jobs(store, clock=clock, config=config(lock_duration=LOCK))
    cancelled = asyncio.Event()

    async def hang(job: Job) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    jobs.register("t", hang)
    job = await jobs.enqueue("t", None)
    run = asyncio.create_task(jobs.run_once())
    await until(lambda: clock.sleepers > 0)
    clock.advance(LOCK - timedelta(microseconds=1))
    await asyncio.sleep(0)
    assert not cancelled.is_set()
    clock.advance(timedelta(microseconds=1))
    assert await run == 1
    assert cancelled.is_set()
    after = await jobs.get(job.id)
    assert after.status is JobStatus.PENDING
    assert after.last_error == "timed out after 300s (lock_duration)"
    assert after.retries == 1


async def test_a_handler_swallowing_the_timeout_still_fails_and_its_job_records(
    store: MemoryStore, clock: FakeClock
) -> None:
    """A handler that catches the timeout's cancellation and returns (or raises something
    else) still ends in a timed-out attempt; the result is written despite the cancel."""
    jobs = Jobs(store, clock=clock, config=config(lock_duration=LOCK))

    async def stubborn(job: Job) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if job.payload == "raise":
                raise RuntimeError("cleanup failed") from None

    jobs.register("t", stubborn)
    quiet = await jobs.enqueue("t", "return")
    loud = await jobs.enqueue("t", "raise")
    run = asyncio.create_task(jobs.run_once())
    await until(lambda: clock.sleepers > 0)
    clock.advance(LOCK)
    assert await run == 2
    for job in (quiet, loud):
        after = await jobs.get(job.id)
        assert (after.status, after.retries) == (JobStatus.PENDING, 1)
        assert after.last_error == "timed out after 300s (lock_duration)"


async def test_timeouts_of_many_running_jobs_each_fire_at_their_own_deadline(
    store: MemoryStore, clock: FakeClock
) -> None:
    """Jobs started at different times time out LOCK after their own start, on one timer;
    a job that finishes in time is not touched."""
    jobs = Jobs(store, clock=clock, config=config(lock_duration=LOCK, worker_pool_size=3))
    gate = asyncio.Event()

    async def handler(job: Job) -> None:
        if job.payload == "quick":
            await gate.wait()
        else:
            await asyncio.Event().wait()

    jobs.register("t", handler)
    first = await jobs.enqueue("t", "slow")
    first_run = asyncio.create_task(jobs.run_once())
    await until(lambda: clock.sleepers > 0)
    clock.advance(timedelta(minutes=1))
    second = await jobs.enqueue("t", "slow")
    quick = await jobs.enqueue("t", "quick")
    second_run = asyncio.create_task(jobs.run_once())
    await settle()
    assert clock.sleepers == 2  # one shared timeout timer (not one per job), the heartbeat
    clock.advance(LOCK - timedelta(minutes=1))
    assert await first_run == 1
    assert (await jobs.get(second.id)).status is JobStatus.PROCESSING
    gate.set()
    await until(lambda: store_status(store, quick.id) is JobStatus.COMPLETED)
    clock.advance(timedelta(minutes=1))
    assert await second_run == 2
    for job in (first, second):
        assert (await jobs.get(job.id)).last_error == "timed out after 300s (lock_duration)"
    assert (await jobs.get(quick.id)).last_error is None
    assert clock.sleepers == 0


def store_status(store: MemoryStore, job_id: str) -> JobStatus | None:
    """A job's status read without awaiting (None if unknown)."""
    job = store._jobs.get(job_id)
    return None if job is None else job.status


async def test_thread_handler_overrun_is_abandoned_and_its_late_result_fenced(
    store: MemoryStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A stuck thread cannot be cancelled: the attempt fails at the timeout and its late
    completion is refused by fencing, logged once at WARNING."""
    jobs = Jobs(store, clock=clock, config=config(lock_duration=LOCK))
    release = threading.Event()
    jobs.register("t", lambda job: release.wait(10))
    job = await jobs.enqueue_with_options("t", None, EnqueueOptions(max_retries=0))
    run = asyncio.create_task(jobs.run_once())
    await until(lambda: clock.sleepers > 0)
    clock.advance(LOCK)
    await run
    failed = await jobs.get(job.id)
    assert (failed.status, failed.last_error) == (
        JobStatus.FAILED,
        "timed out after 300s (lock_duration)",
    )
    with caplog.at_level(logging.WARNING, logger="jobs_core.worker"):
        release.set()
        for _ in range(2000):  # the thread finishes on its own time
            if any("late completion" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.001)
    late = [r for r in caplog.records if "late completion" in r.getMessage()]
    assert len(late) == 1
    assert late[0].levelno == logging.WARNING
    assert await jobs.get(job.id) == failed


async def test_expired_lease_is_rescued_as_a_failed_attempt(
    store: MemoryStore, clock: FakeClock
) -> None:
    """A worker that died mid-job: after the lease, the job retries; finally it fails."""
    jobs = Jobs(store, clock=clock, config=config())
    job = await jobs.enqueue_with_options("t", None, EnqueueOptions(max_retries=1))
    # A worker in another process claims it and dies.
    await store.claim(topics=["t"], now=clock.now(), lease=jobs.config.lease, limit=1)
    jobs.register("t", lambda job: None)
    assert await jobs.run_once() == 0
    clock.advance(jobs.config.lease + timedelta(microseconds=1))
    await jobs.run_once()  # rescues; the retry is not due yet (backoff)
    rescued = await jobs.get(job.id)
    assert (rescued.status, rescued.retries, rescued.last_error) == (
        JobStatus.PENDING,
        1,
        LOCK_EXPIRED,
    )
    clock.advance(timedelta(seconds=10))
    assert await jobs.run_once() == 1
    assert (await jobs.get(job.id)).status is JobStatus.COMPLETED


async def test_a_job_that_always_kills_its_worker_ends_failed(
    store: MemoryStore, clock: FakeClock
) -> None:
    """Four lost leases with max_retries=3: failed with 'lock expired', no endless loop."""
    cfg = config()
    jobs = Jobs(store, clock=clock, config=cfg)
    job = await jobs.enqueue_with_options("t", None, EnqueueOptions(max_retries=3))
    for _ in range(4):
        claimed = await store.claim(topics=["t"], now=clock.now(), lease=cfg.lease, limit=1)
        assert len(claimed) == 1
        clock.advance(cfg.lease + timedelta(microseconds=1))
        await jobs.run_once()  # no handler registered: it only rescues
        clock.advance(timedelta(hours=1))  # past the retry's backoff
    final = await jobs.get(job.id)
    assert (final.status, final.retries, final.last_error) == (JobStatus.FAILED, 3, LOCK_EXPIRED)


async def test_concurrency_never_exceeds_the_pool(store: MemoryStore, clock: FakeClock) -> None:
    """With pool 3 and 10 jobs, at most 3 handlers run at once, and each job runs once."""
    jobs = Jobs(store, clock=clock, config=config(worker_pool_size=3, batch_size=10))
    running, peak, gate = 0, 0, asyncio.Event()
    ran: list[str] = []

    async def handler(job: Job) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        ran.append(job.id)
        running -= 1

    jobs.register("t", handler)
    await jobs.enqueue_many("t", range(10))
    await jobs.start()
    await until(lambda: running == 3)
    gate.set()
    await until(lambda: len(ran) == 10)
    await jobs.stop()
    assert peak == 3
    assert len(set(ran)) == 10
    assert (await jobs.stats()).completed == 10


async def test_unknown_topics_are_left_alone(jobs: Jobs) -> None:
    """A worker claims only topics it has handlers for."""
    jobs.register("mine", lambda job: None)
    other = await jobs.enqueue("theirs", None)
    await jobs.enqueue("mine", None)
    assert await jobs.run_once() == 1
    assert (await jobs.get(other.id)).status is JobStatus.PENDING


async def test_enqueue_wakes_an_idle_worker(store: MemoryStore, clock: FakeClock) -> None:
    """No poll interval passes on the fake clock, yet the job runs: the enqueue woke it."""
    jobs = Jobs(store, clock=clock, config=config(poll_interval=timedelta(hours=1)))
    done = asyncio.Event()

    async def handler(job: Job) -> None:
        done.set()

    jobs.register("t", handler)
    await jobs.start()
    await until(lambda: clock.sleepers > 0)  # idle, waiting for its poll
    await jobs.enqueue("t", None)
    await asyncio.wait_for(done.wait(), timeout=5)
    await jobs.stop()


async def test_poll_finds_jobs_that_became_due(store: MemoryStore, clock: FakeClock) -> None:
    """A delayed job runs once the clock passes its run_at and a poll happens."""
    jobs = Jobs(store, clock=clock, config=config(poll_interval=timedelta(seconds=1)))
    done = asyncio.Event()

    async def handler(job: Job) -> None:
        done.set()

    jobs.register("t", handler)
    await jobs.enqueue_at("t", None, T0 + timedelta(seconds=5))
    await jobs.start()
    for _ in range(6):
        await until(lambda: clock.sleepers > 0)
        clock.advance(timedelta(seconds=1))
        await asyncio.sleep(0)
    await asyncio.wait_for(done.wait(), timeout=5)
    await jobs.stop()


async def test_stop_waits_for_running_jobs(store: MemoryStore, clock: FakeClock) -> None:
    """Jobs that finish within the grace period complete; nothing new is claimed."""
    jobs = Jobs(store, clock=clock, config=config(worker_pool_size=1, batch_size=1))
    gate, started = asyncio.Event(), asyncio.Event()

    async def handler(job: Job) -> None:
        started.set()
        await gate.wait()

    jobs.register("t", handler)
    first = await jobs.enqueue("t", None)
    second = await jobs.enqueue("t", None)
    await jobs.start()
    await started.wait()
    stopping = asyncio.create_task(jobs.stop(grace=timedelta(seconds=30)))
    await until(lambda: clock.sleepers > 0)
    gate.set()
    await stopping
    assert (await jobs.get(first.id)).status is JobStatus.COMPLETED
    assert (await jobs.get(second.id)).status is JobStatus.PENDING
    assert not jobs.running


async def test_stop_releases_jobs_still_running_after_the_grace(
    store: MemoryStore, clock: FakeClock
) -> None:
    """After the grace period, running jobs are cancelled and handed back as pending,
    with no attempt counted; nothing is left processing."""
    jobs = Jobs(store, clock=clock, config=config())
    started = asyncio.Event()

    async def hang(job: Job) -> None:
        started.set()
        await asyncio.Event().wait()

    jobs.register("t", hang)
    job = await jobs.enqueue("t", None)
    await jobs.start()
    await started.wait()
    stopping = asyncio.create_task(jobs.stop(grace=timedelta(seconds=10)))
    # Claim loop and services gone; left: the handler's timeout, the heartbeat renewing
    # its lease, and stop's grace period.
    await until(
        lambda: (
            not jobs.running
            and not any(service.running for service in jobs.services)
            and clock.sleepers == 3
        )
    )
    clock.advance(timedelta(seconds=10))
    await stopping
    after = await jobs.get(job.id)
    assert (after.status, after.retries, after.lock_token) == (JobStatus.PENDING, 0, None)
    assert (await jobs.stats()).processing == 0


class FlakyStore(MemoryStore):
    """Fails the first `failures` claims and updates as if the database were down."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.claim_failures = failures
        self.update_failures = failures

    async def claim(self, **kwargs):  # type: ignore[no-untyped-def]
        if self.claim_failures:
            self.claim_failures -= 1
            raise StoreUnavailable("database down")
        return await super().claim(**kwargs)

    async def update(self, updates):  # type: ignore[no-untyped-def]
        if self.update_failures and any(u.job.status is JobStatus.COMPLETED for u in updates):
            self.update_failures -= 1
            raise StoreUnavailable("database down")
        return await super().update(updates)


async def test_worker_survives_store_errors(clock: FakeClock) -> None:
    """Claim and completion failures are logged and retried; the job completes."""
    store = FlakyStore(failures=2)
    jobs = Jobs(store, clock=clock, config=config(poll_interval=timedelta(seconds=1)))

    async def handler(job: Job) -> None:
        return None

    jobs.register("t", handler)
    job = await jobs.enqueue("t", None)
    await jobs.start()
    for _ in range(200):
        if (await store.get(job.id)).status is JobStatus.COMPLETED:
            break
        await settle()
        clock.advance(timedelta(seconds=1))
    assert (await store.get(job.id)).status is JobStatus.COMPLETED
    assert jobs.running
    await jobs.stop()


async def test_handler_exceptions_never_stop_the_worker(
    store: MemoryStore, clock: FakeClock
) -> None:
    """Even BaseException-free crashes like KeyError just fail the attempt."""
    jobs = Jobs(store, clock=clock, config=config())
    empty: dict[str, int] = {}
    jobs.register("t", lambda job: empty["missing"])
    job = await jobs.enqueue_with_options("t", None, EnqueueOptions(max_retries=0))
    await jobs.run_once()
    assert (await jobs.get(job.id)).last_error == "KeyError: 'missing'"


async def test_a_restarted_worker_retries_result_writes_without_giving_up(
    clock: FakeClock,
) -> None:
    """stop() bounds the retries of its final flush; after start() again, a result write
    that fails more often than that is still retried until the store takes it."""
    store = FlakyStore(failures=0)
    jobs = Jobs(store, clock=clock, config=config())

    async def handler(job: Job) -> None:
        return None

    jobs.register("t", handler)
    await jobs.start()
    await jobs.stop()
    store.update_failures = 6  # more than the 3 tries a closing writer allows
    job = await jobs.enqueue("t", None)
    await jobs.start()
    for _ in range(100):
        if (await store.get(job.id)).status is JobStatus.COMPLETED:
            break
        await settle()
        clock.advance(timedelta(seconds=1))
    assert (await store.get(job.id)).status is JobStatus.COMPLETED
    await jobs.stop()
