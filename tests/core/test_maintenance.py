"""Maintenance services on a fake clock: their interval, their backoff on failure, stop,
`Jobs` starting and stopping them, and the lease rescuer apart from the claims."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

from jobs_core import (
    BaseObserver,
    Job,
    Jobs,
    JobsConfig,
    JobStatus,
    LeaseRescuer,
    MaintenanceService,
    MemoryStore,
    ScheduleFirer,
    StoreError,
    StoreUnavailable,
)
from jobs_core._events import ObserverGroup
from jobs_core.testing import FakeClock
from tests.core.conftest import T0, settle, until

SECOND = timedelta(seconds=1)


class Errors(BaseObserver):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, timedelta | None]] = []

    def store_error(self, operation: str, error: BaseException, retry_in: timedelta | None) -> None:
        self.seen.append((operation, str(error), retry_in))


class Ticker(MaintenanceService):
    """Records each run's `now`; fails while `failing` is set; may wait on `gate`."""

    name = "tick"

    def __init__(self, clock: FakeClock, observer: Errors) -> None:
        super().__init__(clock=clock, interval=SECOND, observer=ObserverGroup([observer]))
        self.runs: list[datetime] = []
        self.failing = False
        self.gate: asyncio.Event | None = None
        self.finished = 0

    async def run_once(self, now: datetime) -> None:
        self.runs.append(now)
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            raise StoreUnavailable(f"down at {len(self.runs)}")
        self.finished += 1


async def step(clock: FakeClock, delta: timedelta = SECOND) -> None:
    await settle()
    clock.advance(delta)
    await settle()


async def test_a_service_runs_at_start_and_then_every_interval(clock: FakeClock) -> None:
    ticker = Ticker(clock, Errors())
    await ticker.start()
    await settle()
    assert ticker.runs == [T0]
    for _ in range(3):
        await step(clock, SECOND - timedelta(microseconds=1))
        await step(clock, timedelta(microseconds=1))
    assert ticker.runs == [T0, T0 + SECOND, T0 + 2 * SECOND, T0 + 3 * SECOND]
    await ticker.stop()
    assert not ticker.running
    await step(clock, timedelta(hours=1))
    assert len(ticker.runs) == 4  # stopped: no more runs


async def test_failing_runs_back_off_doubling_to_the_cap_then_recover(clock: FakeClock) -> None:
    """Each failure is a `store_error` under the service's name with the wait that
    follows (2, 4, 5, 5 s: doubling, capped at 5 s); a success returns to the interval."""
    errors = Errors()
    ticker = Ticker(clock, errors)
    ticker.failing = True
    await ticker.start()
    for _ in range(18):
        await step(clock)
        if len(ticker.runs) == 4:
            ticker.failing = False
    await ticker.stop()
    seconds = [int((run - T0).total_seconds()) for run in ticker.runs]
    assert seconds[:7] == [0, 2, 6, 11, 16, 17, 18]
    assert errors.seen == [
        ("tick", "down at 1", 2 * SECOND),
        ("tick", "down at 2", 4 * SECOND),
        ("tick", "down at 3", 5 * SECOND),
        ("tick", "down at 4", 5 * SECOND),
    ]
    assert ticker.finished >= 2


async def test_stop_lets_a_run_in_progress_finish(clock: FakeClock) -> None:
    ticker = Ticker(clock, Errors())
    ticker.gate = asyncio.Event()
    await ticker.start()
    await until(lambda: len(ticker.runs) == 1)
    stopping = asyncio.create_task(ticker.stop())
    await settle()
    assert not stopping.done()
    ticker.gate.set()
    await stopping
    assert ticker.finished == 1
    assert not ticker.running


async def test_jobs_starts_and_stops_its_services_with_the_worker(
    store: MemoryStore, clock: FakeClock
) -> None:
    jobs = Jobs(store, clock=clock)
    rescuer, firer = jobs.services
    assert isinstance(rescuer, LeaseRescuer)
    assert isinstance(firer, ScheduleFirer)

    def state() -> tuple[bool, bool, bool]:
        return (rescuer.running, firer.running, jobs.running)

    states = [state()]
    await jobs.start()
    states.append(state())
    await jobs.stop()
    states.append(state())
    await jobs.start()  # and again after a stop
    states.append(state())
    await jobs.aclose()
    states.append(state())
    off, on = (False, False, False), (True, True, True)
    assert states == [off, on, off, on, off]


class Rescues(BaseObserver):
    def __init__(self) -> None:
        self.jobs: list[Job] = []

    def rescued(self, jobs: Sequence[Job]) -> None:
        self.jobs.extend(jobs)


async def test_the_rescuer_wakes_the_worker_only_for_work_due_now(
    store: MemoryStore, clock: FakeClock
) -> None:
    """A rescued job due at once (zero backoff) wakes the worker; one that waits for its
    backoff, or that fails for good, does not."""
    wakes: list[datetime] = []
    for backoff, max_retries, woken in ((timedelta(0), 1, 1), (SECOND, 1, 0), (timedelta(0), 0, 0)):
        wakes.clear()
        cfg = JobsConfig(backoff=lambda n, b=backoff: b, max_retries=max_retries)  # type: ignore[misc]
        store = MemoryStore()
        jobs = Jobs(store, clock=clock, config=cfg)
        job = await jobs.enqueue("t", None)
        await store.claim(topics=["t"], now=clock.now(), lease=cfg.lease, limit=1)
        observer = Rescues()
        rescuer = LeaseRescuer(
            store,
            clock=clock,
            config=cfg,
            observer=ObserverGroup([observer]),
            wake=lambda: wakes.append(clock.now()),
        )
        await rescuer.run_once(clock.now())
        assert observer.jobs == []
        now = clock.advance(cfg.lease + timedelta(microseconds=1))
        await rescuer.run_once(now)
        assert [j.id for j in observer.jobs] == [job.id]
        assert len(wakes) == woken, (backoff, max_retries)


class NoClaims(MemoryStore):
    """Every claim fails; the rescue sweep works."""

    async def claim(self, **kwargs):  # type: ignore[no-untyped-def]
        raise StoreError("claims are broken")


async def test_failing_claims_never_stop_the_rescue_sweep(clock: FakeClock) -> None:
    """While every claim fails and backs off, the rescuer still sweeps each poll
    interval and hands an expired lease back."""
    store = NoClaims()
    cfg = JobsConfig(poll_interval=SECOND)
    jobs = Jobs(store, clock=clock, config=cfg)
    jobs.register("t", lambda job: None)
    job = await jobs.enqueue("t", None)
    await MemoryStore.claim(store, topics=["t"], now=T0, lease=cfg.lease, limit=1)
    await jobs.start()
    lease_over = T0 + cfg.lease + timedelta(microseconds=1)
    while clock.now() < lease_over + SECOND:
        await step(clock)
    rescued = await jobs.get(job.id)
    assert (rescued.status, rescued.retries) == (JobStatus.PENDING, 1)
    assert rescued.updated <= lease_over + SECOND  # within one interval of the expiry
    assert jobs.running
    await jobs.stop()
