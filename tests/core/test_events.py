"""The worker's events reach its observers exactly when they happen (fake clock, no
sleeps), the default `LoggingObserver` logs them, and a raising observer breaks nothing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest

from jobs_core import (
    BaseObserver,
    EnqueueOptions,
    Job,
    Jobs,
    JobsConfig,
    JobStatus,
    JobUpdate,
    LoggingObserver,
    MemoryStore,
    Outcome,
    StoreUnavailable,
)
from jobs_core import _transitions as transitions
from jobs_core.testing import FakeClock
from tests.core.conftest import T0, settle, until

Event = tuple[str, datetime, tuple[object, ...]]


class Recorder(BaseObserver):
    """Every event with the fake time it was reported at, and what the store held then."""

    def __init__(self, clock: FakeClock, store: MemoryStore | None = None) -> None:
        self.clock = clock
        self.store = store
        self.events: list[Event] = []
        #: For `finished`: the job's stored status at the moment it was reported.
        self.stored_when_finished: list[JobStatus] = []

    def _add(self, name: str, *args: object) -> None:
        self.events.append((name, self.clock.now(), args))

    def named(self, name: str) -> list[Event]:
        return [event for event in self.events if event[0] == name]

    def claimed(self, jobs: Sequence[Job]) -> None:
        self._add("claimed", [job.id for job in jobs])

    def started(self, job: Job) -> None:
        self._add("started", job.id, job.status)

    def finished(self, job: Job, outcome: Outcome, duration: timedelta, error: str | None) -> None:
        if self.store is not None:
            self.stored_when_finished.append(self.store._jobs[job.id].status)
        self._add("finished", job.id, outcome, duration, error, job.status, job.retries)

    def refused(self, job: Job, event: str) -> None:
        self._add("refused", job.id, event)

    def rescued(self, jobs: Sequence[Job]) -> None:
        self._add("rescued", [(job.id, job.status, job.retries) for job in jobs])

    def store_error(self, operation: str, error: BaseException, retry_in: timedelta | None) -> None:
        self._add("store_error", operation, type(error).__name__, str(error))

    def store_recovered(self, operation: str) -> None:
        self._add("store_recovered", operation)


def config(**overrides: object) -> JobsConfig:
    # The lease covers each test's execution timeout, as the seed's single lock did, so
    # these tests see no renewals; tests/core/test_heartbeat.py covers those.
    values: dict[str, object] = {
        "lease_duration": timedelta(days=1),
        "backoff": lambda n: timedelta(seconds=10),
    }
    values.update(overrides)
    return JobsConfig(**values)  # type: ignore[arg-type]


async def test_claimed_started_finished_completed_with_the_handler_time(
    store: MemoryStore, clock: FakeClock
) -> None:
    """claimed and started at the claim, finished once the completion is stored, with
    the fake-clock time the handler took."""
    recorder = Recorder(clock, store)
    jobs = Jobs(store, clock=clock, config=config(), observers=[recorder])
    gate = asyncio.Event()

    async def handler(job: Job) -> None:
        await gate.wait()

    jobs.register("t", handler)
    job = await jobs.enqueue("t", None)
    run = asyncio.create_task(jobs.run_once())
    await until(lambda: len(recorder.events) == 2)
    assert recorder.events == [
        ("claimed", T0, ([job.id],)),
        ("started", T0, (job.id, JobStatus.PROCESSING)),
    ]
    clock.advance(timedelta(seconds=3))
    gate.set()
    assert await run == 1
    assert recorder.events[2:] == [
        (
            "finished",
            T0 + timedelta(seconds=3),
            (job.id, Outcome.COMPLETED, timedelta(seconds=3), None, JobStatus.COMPLETED, 0),
        )
    ]
    assert recorder.stored_when_finished == [JobStatus.COMPLETED]


async def test_a_failed_attempt_is_retried_then_failed_with_its_error(
    store: MemoryStore, clock: FakeClock
) -> None:
    """With one retry: the first failure finishes RETRIED, the second FAILED; each with
    the error text and the time the handler ran before raising."""
    recorder = Recorder(clock, store)
    jobs = Jobs(store, clock=clock, config=config(), observers=[recorder])

    async def handler(job: Job) -> None:
        clock.advance(timedelta(seconds=2))  # the handler "takes" 2 s of clock time
        raise ValueError(f"boom {job.retries}")

    jobs.register("t", handler)
    job = await jobs.enqueue_with_options("t", None, EnqueueOptions(max_retries=1))
    assert await jobs.run_once() == 1
    clock.advance(timedelta(seconds=10))
    assert await jobs.run_once() == 1
    finished = [args for _, _, args in recorder.named("finished")]
    assert finished == [
        (job.id, Outcome.RETRIED, timedelta(seconds=2), "ValueError: boom 0", JobStatus.PENDING, 1),
        (job.id, Outcome.FAILED, timedelta(seconds=2), "ValueError: boom 1", JobStatus.FAILED, 1),
    ]
    assert recorder.stored_when_finished == [JobStatus.PENDING, JobStatus.FAILED]
    assert [name for name, _, _ in recorder.events] == [
        "claimed",
        "started",
        "finished",
        "claimed",
        "started",
        "finished",
    ]


async def test_a_timeout_finishes_as_a_failed_attempt(store: MemoryStore, clock: FakeClock) -> None:
    """An async handler cancelled at `lock_duration` finishes RETRIED after exactly that."""
    lock = timedelta(minutes=1)
    recorder = Recorder(clock)
    jobs = Jobs(store, clock=clock, config=config(lock_duration=lock), observers=[recorder])

    async def hang(job: Job) -> None:
        await asyncio.Event().wait()

    jobs.register("t", hang)
    await jobs.enqueue("t", None)
    run = asyncio.create_task(jobs.run_once())
    await until(lambda: clock.sleepers > 0)
    clock.advance(lock)
    await run
    ((_, when, args),) = recorder.named("finished")
    assert when == T0 + lock
    assert args[1:4] == (Outcome.RETRIED, lock, "timed out after 60s (lock_duration)")


async def test_a_job_handed_back_at_stop_finishes_released(
    store: MemoryStore, clock: FakeClock
) -> None:
    """Still running when the grace ends: RELEASED, no error, the time it had run."""
    recorder = Recorder(clock, store)
    jobs = Jobs(store, clock=clock, config=config(), observers=[recorder])
    started = asyncio.Event()

    async def hang(job: Job) -> None:
        started.set()
        await asyncio.Event().wait()

    jobs.register("t", hang)
    job = await jobs.enqueue("t", None)
    await jobs.start()
    await started.wait()
    clock.advance(timedelta(seconds=4))
    await jobs.stop(grace=timedelta(0))
    ((_, _, args),) = recorder.named("finished")
    assert args == (job.id, Outcome.RELEASED, timedelta(seconds=4), None, JobStatus.PENDING, 0)
    assert recorder.stored_when_finished == [JobStatus.PENDING]


async def test_a_stale_completion_refused_by_fencing_is_reported_not_finished(
    store: MemoryStore, clock: FakeClock
) -> None:
    """The job is handed back by someone else while its handler runs: the worker's
    completion is refused by the store's guard, reported as `refused`, never `finished`."""
    recorder = Recorder(clock)
    jobs = Jobs(store, clock=clock, config=config(), observers=[recorder])

    async def handler(job: Job) -> None:
        assert job.lock_token is not None
        taken = transitions.release(job, token=job.lock_token, now=clock.now())
        assert await store.update([transitions.update(job, taken)]) == [True]

    jobs.register("t", handler)
    job = await jobs.enqueue("t", None)
    assert await jobs.run_once() == 1
    assert recorder.named("refused") == [("refused", T0, (job.id, "completed"))]
    assert recorder.named("finished") == []
    assert (await jobs.get(job.id)).status is JobStatus.PENDING


async def test_expired_leases_are_reported_rescued_as_stored(
    store: MemoryStore, clock: FakeClock
) -> None:
    """A claim whose owner died: once its lease is over, the sweep reports the job as it
    stored it (pending again, one attempt counted)."""
    recorder = Recorder(clock)
    cfg = config()
    jobs = Jobs(store, clock=clock, config=cfg, observers=[recorder])
    job = await jobs.enqueue("t", None)
    await store.claim(topics=["t"], now=clock.now(), lease=cfg.lease, limit=1)
    await jobs.run_once()
    clock.advance(cfg.lease)
    await jobs.run_once()  # the lease ends now, so it is not expired yet
    assert recorder.named("rescued") == []
    later = clock.advance(timedelta(microseconds=1))
    await jobs.run_once()
    assert recorder.named("rescued") == [("rescued", later, ([(job.id, JobStatus.PENDING, 1)],))]


class FailingStore(MemoryStore):
    """Fails the next `claims` claims and `writes` result writes."""

    def __init__(self, *, claims: int = 0, writes: int = 0) -> None:
        super().__init__()
        self.claims = claims
        self.writes = writes

    async def claim(self, **kwargs):  # type: ignore[no-untyped-def]
        if self.claims:
            self.claims -= 1
            raise StoreUnavailable("no claims today")
        return await super().claim(**kwargs)

    async def update(self, updates: Sequence[JobUpdate]) -> Sequence[bool]:
        if self.writes and any(u.job.status is JobStatus.COMPLETED for u in updates):
            self.writes -= 1
            raise StoreUnavailable("no writes today")
        return await super().update(updates)


class DelayRecorder(BaseObserver):
    """Records each store error's wait before the retry."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, timedelta | None]] = []

    def store_error(self, operation: str, error: BaseException, retry_in: timedelta | None) -> None:
        self.errors.append((operation, retry_in))


async def test_store_errors_of_claims_and_writes_are_reported_as_they_happen(
    clock: FakeClock,
) -> None:
    """Two failed claims, then one failed write: each a `store_error` at its moment, with
    the backoff before the retry, and a `store_recovered` when each works again; the job
    still completes."""
    store = FailingStore(claims=2, writes=1)
    recorder, delays = Recorder(clock), DelayRecorder()
    jobs = Jobs(
        store,
        clock=clock,
        config=config(poll_interval=timedelta(seconds=1)),
        observers=[recorder, delays],
    )
    jobs.register("t", lambda job: None)
    job = await jobs.enqueue("t", None)
    await jobs.start()
    await until(lambda: len(recorder.named("store_error")) == 1)
    assert recorder.named("store_error") == [
        ("store_error", T0, ("claim", "StoreUnavailable", "no claims today"))
    ]
    await settle()  # the worker is asleep in its backoff
    clock.advance(timedelta(seconds=2))  # the first backoff: poll_interval * 2
    await until(lambda: len(recorder.named("store_error")) == 2)
    assert recorder.named("store_error")[1][1] == T0 + timedelta(seconds=2)
    await settle()  # the worker is asleep in its backoff
    clock.advance(timedelta(seconds=4))  # the second backoff
    await until(lambda: len(recorder.named("store_error")) == 3)
    assert recorder.named("store_error")[2] == (
        "store_error",
        T0 + timedelta(seconds=6),
        ("write", "StoreUnavailable", "no writes today"),
    )
    await settle()  # the worker is asleep in its backoff
    clock.advance(timedelta(milliseconds=100))  # the writer's first retry
    await until(lambda: bool(recorder.named("finished")))
    await jobs.stop()
    assert delays.errors == [
        ("claim", timedelta(seconds=2)),
        ("claim", timedelta(seconds=4)),
        ("write", timedelta(milliseconds=100)),
    ]
    assert recorder.named("store_recovered") == [
        ("store_recovered", T0 + timedelta(seconds=6), ("claim",)),
        ("store_recovered", T0 + timedelta(seconds=6, milliseconds=100), ("write",)),
    ]
    assert (await jobs.get(job.id)).status is JobStatus.COMPLETED


class Raising:
    """A duck-typed observer (no base class) that raises in every event it handles."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    def __repr__(self) -> str:
        return f"Raising({self.name!r})"

    def _boom(self, *args: object) -> None:
        self.calls += 1
        raise RuntimeError(f"{self.name} is broken")

    claimed = started = finished = refused = rescued = store_error = store_recovered = _boom

    def enqueued(self, jobs: Sequence[Job]) -> None:
        """Not a worker event: this test is about the worker's (see the next test)."""


async def test_a_raising_observer_is_logged_once_and_breaks_nothing(
    store: MemoryStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Two broken observers around a good one: every job still completes, the good one
    sees every event, and each broken one is logged once, however often it raises."""
    first, second = Raising("first"), Raising("second")
    recorder = Recorder(clock)
    jobs = Jobs(store, clock=clock, config=config(), observers=[first, recorder, second])
    jobs.register("t", lambda job: None)
    await jobs.enqueue_many("t", range(3))
    with caplog.at_level(logging.ERROR, logger="jobs_core.events"):
        assert await jobs.run_once() == 3
    assert (await jobs.stats()).completed == 3
    assert [name for name, _, _ in recorder.events].count("finished") == 3
    assert first.calls == second.calls == 1 + 3 + 3  # claimed, 3 started, 3 finished
    logged = [r for r in caplog.records if r.name == "jobs_core.events"]
    assert [r.getMessage().split(" raised")[0] for r in logged] == [
        "observer Raising('first')",
        "observer Raising('second')",
    ]
    assert all(r.levelno == logging.ERROR and r.exc_info for r in logged)


async def test_an_observer_may_handle_only_some_events(
    store: MemoryStore, clock: FakeClock
) -> None:
    """A plain class with one method is enough; the events it lacks are skipped."""

    class CountsStarts:
        starts = 0

        def started(self, job: Job) -> None:
            self.starts += 1

    counter = CountsStarts()
    jobs = Jobs(store, clock=clock, config=config(), observers=[counter])  # type: ignore[list-item]
    jobs.register("t", lambda job: None)
    await jobs.enqueue_many("t", range(2))
    assert await jobs.run_once() == 2
    assert counter.starts == 2


def test_the_logging_observer_is_there_by_default_and_yours_replaces_it() -> None:
    """`Jobs` logs by default; a `LoggingObserver` you pass is used instead of the default."""
    recorder = Recorder(FakeClock(T0))
    (default, mine) = Jobs(MemoryStore(), observers=[recorder]).observers
    assert isinstance(default, LoggingObserver)
    assert default.logger.name == "jobs_core.worker"
    assert mine is recorder
    own = LoggingObserver(logging.getLogger("my.jobs"))
    assert Jobs(MemoryStore(), observers=[own]).observers == (own,)
    with pytest.raises(TypeError, match="sequence of observers"):
        Jobs(MemoryStore(), observers=recorder)  # type: ignore[arg-type]


async def test_the_logging_observer_logs_attempts_rescues_and_store_errors(
    store: MemoryStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Today's lines, from the default observer: a failed attempt to be retried (INFO), a
    final failure with the handler's traceback, a rescued lease and a store error with
    its backoff (WARNING); a completion logs nothing."""
    cfg = config(poll_interval=timedelta(seconds=1))
    jobs = Jobs(store, clock=clock, config=cfg)
    empty: dict[str, int] = {}
    jobs.register("bad", lambda job: empty["key"])
    jobs.register("flaky", lambda job: empty["other"])
    jobs.register("good", lambda job: None)
    bad = await jobs.enqueue_with_options("bad", None, EnqueueOptions(max_retries=0))
    flaky = await jobs.enqueue_with_options("flaky", None, EnqueueOptions(max_retries=1))
    await jobs.enqueue("good", None)
    lost = await jobs.enqueue_at("lost", None, T0)
    await store.claim(topics=["lost"], now=T0, lease=cfg.lease, limit=1)
    with caplog.at_level(logging.INFO, logger="jobs_core.worker"):
        assert await jobs.run_once() == 3
        clock.advance(cfg.lease + timedelta(microseconds=1))
        await jobs.run_once()
        down = StoreUnavailable("down")
        LoggingObserver().store_error("claim", down, retry_in=timedelta(seconds=2))
    final = next(r for r in caplog.records if r.getMessage().startswith(f"job {bad.id}"))
    trace = final.getMessage().split("\n", 1)[1]
    # The handler's own frames, not the worker's that called it.
    assert trace.startswith("Traceback (most recent call last):\n  File")
    assert "_worker.py" not in trace
    assert "_threads.py" not in trace
    assert trace.splitlines()[1].startswith(f'  File "{__file__}"')
    assert trace.endswith("KeyError: 'key'")
    lines = sorted(caplog.records[:2], key=lambda r: r.levelno) + caplog.records[2:]
    assert [(r.levelno, r.getMessage().split("\n")[0]) for r in lines] == [
        (logging.INFO, f"job {flaky.id} (flaky) attempt 1 failed, will retry: KeyError: 'other'"),
        (logging.WARNING, f"job {bad.id} (bad) failed for good at attempt 1: KeyError: 'key'"),
        (
            logging.WARNING,
            f"job {lost.id} (lost): lease expired; counted as a failed attempt, now pending",
        ),
        (
            logging.WARNING,
            f"job {flaky.id} (flaky) failed for good at attempt 2: KeyError: 'other'",
        ),
        (logging.WARNING, "store error while claiming (StoreUnavailable: down); retrying in 2.0s"),
    ]


async def test_observers_are_not_called_for_events_they_do_not_override(
    store: MemoryStore, clock: FakeClock
) -> None:
    """`BaseObserver`'s no-ops are skipped, so an observer pays only for what it handles."""

    class OnlyFinished(BaseObserver):
        def __init__(self) -> None:
            self.outcomes: list[Outcome] = []

        def finished(
            self, job: Job, outcome: Outcome, duration: timedelta, error: str | None
        ) -> None:
            self.outcomes.append(outcome)

    observer = OnlyFinished()
    jobs = Jobs(store, clock=clock, config=config(), observers=[observer])
    group = jobs._observers
    assert [len(group._claimed), len(group._started), len(group._finished)] == [0, 0, 2]
    jobs.register("t", lambda job: None)
    await jobs.enqueue("t", None)
    await jobs.run_once()
    await settle()
    assert observer.outcomes == [Outcome.COMPLETED]


def test_the_logging_observer_says_when_a_failing_operation_works_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="jobs_core.worker"):
        for operation in ("claim", "rescue", "write", "watch", "prune"):
            LoggingObserver().store_recovered(operation)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "store reachable again; claiming resumed"),
        (logging.INFO, "rescue sweep succeeded again"),
        (logging.INFO, "writing job results works again"),
        (logging.INFO, "store notifications resumed"),
        (logging.INFO, "store prune works again"),
    ]


async def test_a_handlers_text_cannot_forge_log_lines_or_drive_the_terminal(
    store: MemoryStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Control characters of an error (a newline, an escape sequence) are logged as
    `\\xNN`: one record stays one line; a traceback keeps its own line breaks."""
    cfg = config(poll_interval=timedelta(seconds=1))
    jobs = Jobs(store, clock=clock, config=cfg)

    def forge(job: Job) -> None:
        raise ValueError("boom\nINFO job 1 completed\x1b[2J")

    jobs.register("t", forge)
    job = await jobs.enqueue_with_options("t", None, EnqueueOptions(max_retries=1))
    with caplog.at_level(logging.INFO, logger="jobs_core.worker"):
        assert await jobs.run_once() == 1
        clock.advance(timedelta(hours=2))
        assert await jobs.run_once() == 1
    retried, final = (r.getMessage() for r in caplog.records)
    assert retried == (
        f"job {job.id} (t) attempt 1 failed, will retry:"
        " ValueError: boom\\x0aINFO job 1 completed\\x1b[2J"
    )
    headline, *trace = final.split("\n")
    assert headline.endswith("ValueError: boom\\x0aINFO job 1 completed\\x1b[2J")
    assert trace[0] == "Traceback (most recent call last):"
    assert "\x1b" not in final
    assert trace[-2:] == ["ValueError: boom", "INFO job 1 completed\\x1b[2J"]


class _Enqueues(BaseObserver):
    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def enqueued(self, jobs: Sequence[Job]) -> None:
        self.seen.append([job.id for job in jobs])


async def test_enqueued_reports_the_new_jobs_of_every_enqueue_and_not_duplicates(
    store: MemoryStore, clock: FakeClock
) -> None:
    watcher = _Enqueues()
    jobs = Jobs(store, clock=clock, observers=[watcher])
    one = await jobs.enqueue("t", None)
    at = await jobs.enqueue_at("t", None, clock.now())
    batch = await jobs.enqueue_many("t", [1, 2])
    once = EnqueueOptions(unique_key="k")
    first = await jobs.submit("t", None, once)
    again = await jobs.submit("t", None, once)
    keyed = await jobs.enqueue_many("t", [1, 2], EnqueueOptions(unique_key="other"))
    assert not again.new
    assert watcher.seen == [
        [one.id],
        [at.id],
        [job.id for job in batch],
        [first.job.id],
        [keyed[0].id],
    ]
    assert await jobs.enqueue_many("t", [], once) == []
    assert len(watcher.seen) == 5  # an empty batch or all-duplicate one reports nothing


async def test_an_observer_raising_in_enqueued_breaks_no_enqueue(
    store: MemoryStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(BaseObserver):
        def enqueued(self, jobs: Sequence[Job]) -> None:
            raise RuntimeError("broken")

    jobs = Jobs(store, clock=clock, observers=[Broken()])
    first = await jobs.enqueue("t", None)
    second = await jobs.enqueue("t", None)
    assert [job.id for job in (await jobs.list()).items] == [second.id, first.id]
    logged = [r for r in caplog.records if "raised in enqueued" in r.getMessage()]
    assert len(logged) == 1
