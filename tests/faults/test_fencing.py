"""Fencing and lock expiry on every store, deterministic (RELIABILITY §4.2).

Each check runs on the memory store, a SQLite file and a fresh PostgreSQL table, with a
`FakeClock`: leases expire exactly when the test moves the clock, never by waiting.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import pytest

from jobs_core import (
    LOCK_EXPIRED,
    EnqueueOptions,
    Job,
    Jobs,
    JobsConfig,
    JobStatus,
    JobStore,
    JobUpdate,
    LockLost,
    MemoryStore,
)
from jobs_core import _transitions as transitions
from jobs_core.testing import FakeClock
from jobs_postgres import PostgresStore
from tests.faults.ledger import Ledger, LedgerStore, all_jobs, check
from tests.faults.stores import second_connection

T0 = datetime(2030, 1, 1, tzinfo=UTC)
TICK = timedelta(microseconds=1)
CONFIG = JobsConfig(
    lock_duration=timedelta(seconds=30),
    # A lease that covers the whole timeout (no renewal needed): these tests jump the
    # fake clock past it in one step, as no renewing worker would.
    lease_duration=timedelta(hours=1),
    poll_interval=timedelta(seconds=1),
    backoff=lambda n: timedelta(0),
    max_retries=3,
)
TOPIC = "fenced"


async def _eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for something another thread or connection does (real I/O, so real time)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def _claim_one(store: JobStore, now: datetime) -> Job:
    (job,) = await store.claim(topics=[TOPIC], now=now, lease=CONFIG.lease, limit=1)
    return job


async def _rescue(store: JobStore, now: datetime) -> list[bool]:
    """What the worker's reaper does: read expired leases, expire them, guarded."""
    stale = await store.expired(now=now, limit=100)
    updates = [
        transitions.update(j, transitions.expire(j, now=now, backoff=CONFIG.backoff)) for j in stale
    ]
    return list(await store.update(updates))


def _completion(job: Job, now: datetime) -> JobUpdate:
    assert job.lock_token is not None
    return transitions.update(job, transitions.complete(job, token=job.lock_token, now=now))


async def test_stale_completion_is_refused_after_reclaim(any_store: JobStore) -> None:
    """A's lease expires, the reaper hands J to B; A's completion changes nothing, B's wins."""
    clock = FakeClock(T0)
    jobs = Jobs(any_store, clock=clock, config=CONFIG)
    job = await jobs.enqueue(TOPIC, {"n": 1})
    a = await _claim_one(any_store, clock.now())
    late = _completion(a, clock.now())  # A finished while it still held the lease...
    assert a.locked_until is not None
    clock.set(a.locked_until + TICK)
    assert await _rescue(any_store, clock.now()) == [True]
    b = await _claim_one(any_store, clock.now())
    assert b.id == job.id
    assert b.lock_token != a.lock_token

    with pytest.raises(LockLost):  # ...the worker's own check refuses it now,
        transitions.complete(a, token=a.lock_token or "", now=clock.now())
    assert await any_store.update([late]) == [False]  # and so does the store.

    held = await any_store.get(job.id)
    assert (held.status, held.lock_token, held.retries) == (JobStatus.PROCESSING, b.lock_token, 1)
    assert await any_store.update([_completion(b, clock.now())]) == [True]
    assert (await jobs.stats()).completed == 1
    assert await any_store.update([_completion(b, clock.now())]) == [False]  # not twice


async def test_stale_failure_is_refused_after_reclaim(any_store: JobStore) -> None:
    """A's failure report after the re-claim leaves `last_error` and `retries` alone."""
    clock = FakeClock(T0)
    jobs = Jobs(any_store, clock=clock, config=CONFIG)
    job = await jobs.enqueue(TOPIC, None)
    a = await _claim_one(any_store, clock.now())
    assert a.lock_token is not None
    assert a.locked_until is not None
    failure = transitions.update(
        a,
        transitions.fail(
            a, token=a.lock_token, error="A broke", now=clock.now(), backoff=CONFIG.backoff
        ),
    )
    clock.set(a.locked_until + TICK)
    await _rescue(any_store, clock.now())
    b = await _claim_one(any_store, clock.now())

    assert await any_store.update([failure]) == [False]
    held = await any_store.get(job.id)
    assert (held.status, held.lock_token, held.retries, held.last_error) == (
        JobStatus.PROCESSING,
        b.lock_token,
        1,
        LOCK_EXPIRED,
    )


async def _together(
    target: JobStore, change: JobUpdate, both_waiting: asyncio.Event, arrived: list[int]
) -> bool:
    """Hold each write until both are ready, then send them at once."""
    arrived[0] += 1
    if arrived[0] == 2:
        both_waiting.set()
    await both_waiting.wait()
    (ok,) = await target.update([change])
    return ok


@pytest.mark.parametrize("rounds", [12])
async def test_completion_racing_the_rescuer_has_one_winner(
    any_store: JobStore, tmp_path: Path, request: pytest.FixtureRequest, rounds: int
) -> None:
    """A's completion and the reaper's expiry hit the store together: exactly one applies."""
    pg_url = request.getfixturevalue("pg_url") if isinstance(any_store, PostgresStore) else None
    other = await second_connection(any_store, tmp_path, pg_url)
    clock = FakeClock(T0)
    jobs = Jobs(any_store, clock=clock, config=CONFIG)
    winners: list[str] = []
    try:
        for i in range(rounds):
            job = await jobs.enqueue(TOPIC, {"round": i})
            a = await _claim_one(any_store, clock.now())
            assert a.id == job.id
            assert a.locked_until is not None
            completion = _completion(a, clock.now())
            clock.set(a.locked_until + TICK)
            (stale,) = await other.expired(now=clock.now(), limit=1)
            expiry = transitions.update(
                stale, transitions.expire(stale, now=clock.now(), backoff=CONFIG.backoff)
            )
            both_waiting, arrived = asyncio.Event(), [0]
            pair = [
                _together(any_store, completion, both_waiting, arrived),
                _together(other, expiry, both_waiting, arrived),
            ]
            if i % 2:
                pair.reverse()
            results = await asyncio.gather(*pair)
            if i % 2:
                results.reverse()
            done, expired = results
            assert done != expired, f"round {i}: completion={done} expiry={expired}"
            final = await any_store.get(job.id)
            if done:
                assert final.status is JobStatus.COMPLETED
                winners.append("completion")
            else:
                assert (final.status, final.retries, final.last_error) == (
                    JobStatus.PENDING,
                    1,
                    LOCK_EXPIRED,
                )
                winners.append("rescuer")
                await jobs.delete(job.id)
    finally:
        if other is not any_store:
            await other.close()
    assert len(winners) == rounds


async def _until_sleeping(clock: FakeClock, count: int = 1) -> None:
    await _eventually(lambda: clock.sleepers >= count)


async def test_async_handler_overrun_is_cancelled_before_the_lease_ends(
    any_store: JobStore, tmp_path: Path
) -> None:
    """An async handler past `lock_duration` is cancelled (before `locked_until`), the attempt
    fails with the timeout, and the cancelled handler writes nothing afterwards."""
    clock = FakeClock(T0)
    ledger = Ledger(tmp_path / "ledger.db", now=clock.now)
    jobs = Jobs(LedgerStore(any_store, ledger), clock=clock, config=CONFIG)
    started = asyncio.Event()
    cancelled_at: list[datetime] = []

    async def stuck(job: Job) -> None:
        ledger.started(job)
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled_at.append(clock.now())
            raise

    jobs.register(TOPIC, stuck)
    job = await jobs.enqueue(TOPIC, None)
    run = asyncio.create_task(jobs.run_once())
    await asyncio.wait_for(started.wait(), 10)
    await _until_sleeping(clock)
    clock.advance(CONFIG.lock_duration)
    assert await asyncio.wait_for(run, 10) == 1

    after = await any_store.get(job.id)
    (execution,) = ledger.executions()
    assert cancelled_at == [T0 + CONFIG.lock_duration]
    assert cancelled_at[0].timestamp() < execution.locked_until
    assert (after.status, after.retries, after.last_error) == (
        JobStatus.PENDING,
        1,
        "timed out after 30s (lock_duration)",
    )
    outcomes = ledger.outcomes()
    assert [(o.kind, o.applied) for o in outcomes] == [("pending", True)]
    ledger.close()


async def test_thread_handler_overrun_late_completion_is_fenced(
    any_store: JobStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A plain-def handler cannot be cancelled: it keeps running, the attempt fails at the
    timeout, B re-claims, and A's late completion is refused (one WARNING) while B wins."""
    caplog.set_level(logging.WARNING, logger="jobs_core.worker")
    clock = FakeClock(T0)
    ledger = Ledger(tmp_path / "ledger.db", now=clock.now)
    store = LedgerStore(any_store, ledger)
    worker_a = Jobs(store, clock=clock, config=CONFIG)
    worker_b = Jobs(store, clock=clock, config=CONFIG)
    a_started, a_release = threading.Event(), threading.Event()
    b_started, b_release = asyncio.Event(), asyncio.Event()

    def slow(job: Job) -> None:
        a_started.set()
        a_release.wait(30)

    async def quick(job: Job) -> None:
        ledger.started(job)
        b_started.set()
        await b_release.wait()

    worker_a.register(TOPIC, slow)
    worker_b.register(TOPIC, quick)
    job = await worker_a.enqueue(TOPIC, None)
    run_a = asyncio.create_task(worker_a.run_once())
    await _eventually(a_started.is_set)
    await _until_sleeping(clock)
    clock.advance(CONFIG.lock_duration)
    await asyncio.wait_for(run_a, 10)
    assert (await any_store.get(job.id)).status is JobStatus.PENDING  # timed out, retried

    run_b = asyncio.create_task(worker_b.run_once())
    await asyncio.wait_for(b_started.wait(), 10)
    b_token = (await any_store.get(job.id)).lock_token
    a_release.set()  # the abandoned thread returns now: its completion arrives late
    await _eventually(lambda: any(o.kind == "completed" for o in ledger.outcomes()))
    held = await any_store.get(job.id)
    assert (held.status, held.lock_token) == (JobStatus.PROCESSING, b_token)

    b_release.set()
    await asyncio.wait_for(run_b, 10)
    assert (await any_store.get(job.id)).status is JobStatus.COMPLETED
    kinds = [(o.kind, o.applied) for o in ledger.outcomes()]
    assert kinds == [("pending", True), ("completed", False), ("completed", True)]
    late = [r for r in caplog.records if "late completion" in r.getMessage()]
    assert len(late) == 1
    assert late[0].levelno == logging.WARNING
    ledger.close()


async def test_job_that_always_kills_its_worker_ends_failed(
    any_store: JobStore, tmp_path: Path
) -> None:
    """Every claim dies with its worker; after 1 + max_retries expiries the job is `failed`
    with "lock expired", and nobody claims it again."""
    clock = FakeClock(T0)
    jobs = Jobs(any_store, clock=clock, config=CONFIG)
    rescuer = Jobs(any_store, clock=clock, config=CONFIG)  # no handlers: it only reaps
    job = await jobs.enqueue_with_options(TOPIC, None, EnqueueOptions(max_retries=3))
    for attempt in range(4):
        claimed = await any_store.claim(
            topics=[TOPIC], now=clock.now(), lease=CONFIG.lease, limit=10
        )
        assert [c.id for c in claimed] == [job.id], f"attempt {attempt}"
        assert claimed[0].locked_until is not None
        clock.set(claimed[0].locked_until + TICK)  # the worker died; its lease runs out
        assert await rescuer.run_once() == 0
    final = await any_store.get(job.id)
    assert (final.status, final.retries, final.last_error) == (JobStatus.FAILED, 3, LOCK_EXPIRED)
    clock.advance(timedelta(hours=1))
    assert (
        await any_store.claim(topics=[TOPIC], now=clock.now(), lease=CONFIG.lease, limit=10) == []
    )
    stats = await jobs.stats()
    report = check(
        enqueued=[job.id],
        jobs=await all_jobs(any_store),
        stats=stats,
        executions=[],
        outcomes=[],
    )
    report.assert_ok()


async def test_checker_catches_an_overlap(tmp_path: Path) -> None:
    """The checker itself: a second run that starts inside the first run's lease is I3."""
    clock = FakeClock(T0)
    store = MemoryStore()
    ledger = Ledger(tmp_path / "ledger.db", now=clock.now)
    jobs = Jobs(store, clock=clock, config=CONFIG)
    job = await jobs.enqueue(TOPIC, None)
    a = await _claim_one(store, clock.now())
    ledger.started(a)
    forged = attrs.evolve(a, lock_token="forged")
    ledger.started(forged)
    report = check(
        enqueued=[job.id],
        jobs=await all_jobs(store),
        stats=await jobs.stats(),
        executions=ledger.executions(),
        outcomes=ledger.outcomes(),
        require_terminal=False,
    )
    assert any(v.startswith("I3") for v in report.violations)
    assert report.figures["overlaps_in_valid_lock"] == 1
    ledger.close()
