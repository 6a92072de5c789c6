"""`Jobs`: the application service (register handlers, enqueue, inspect, manage, run)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

import attrs

from jobs_core import _transitions as transitions
from jobs_core._bulk import BULK_MAX, BulkResult, BulkSelection, run_bulk
from jobs_core._config import JobsConfig, check_duration, check_grace, check_max_retries
from jobs_core._durations import Duration
from jobs_core._enqueued import Enqueued, EnqueuedJobs
from jobs_core._errors import (
    InvalidOptions,
    InvalidSchedule,
    JobBusy,
    JobNotFound,
    ScheduleNotFound,
    TopicAlreadyRegistered,
    UnreadableJob,
)
from jobs_core._events import JobsObserver, LoggingObserver, ObserverGroup
from jobs_core._foreground import on_stop_signals
from jobs_core._ids import new_job_id
from jobs_core._maintenance import LeaseRescuer, MaintenanceService, ScheduleFirer
from jobs_core._model import EnqueueOptions, Job, JobPage, JobQuery, JobStats, JobStatus
from jobs_core._payload import canonical
from jobs_core._schedules import (
    NEVER,
    Misfire,
    Schedule,
    check_schedule_name,
    check_timing,
    next_slot,
)
from jobs_core._topics import TopicInfo, check_concurrency, check_max_running
from jobs_core._validation import (
    check_page,
    check_priority,
    check_status,
    check_time,
    check_topic,
    check_unique_key,
)
from jobs_core._worker import Handler, Worker
from jobs_core.clock import Clock, SystemClock
from jobs_core.ports import JobStore, ScheduleStore

H = TypeVar("H", bound=Handler)

#: How often requeue/delete re-read a job that changed under them before giving up.
_CAS_ATTEMPTS = 5
#: Statuses `delete` accepts, as stored text (for rows that cannot be read as a `Job`).
_DELETABLE = frozenset(status.value for status in transitions.DELETABLE_STATUSES)


class Jobs:
    """A job queue over one store: the seed's `app.Jobs()`.

    Handlers are registered per topic; `start()` runs a worker for them, and the
    maintenance services (the lease rescuer), in the background of the current event
    loop. `observers` receive the worker's events (see `JobsObserver`), after a
    `LoggingObserver`, which is always there: pass one of your own to replace it (say,
    with another logger), or silence it through `logging`. Every method validates its
    input and raises a specific `JobsError` subclass, storing nothing, when it is wrong.
    """

    def __init__(
        self,
        store: JobStore,
        *,
        clock: Clock | None = None,
        config: JobsConfig | None = None,
        observers: Sequence[JobsObserver] = (),
    ) -> None:
        self.store = store
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.config = config if config is not None else JobsConfig()
        self._handlers: dict[str, Handler] = {}
        #: Per-topic settings given at registration, beside the config's defaults.
        self._timeouts: dict[str, timedelta] = {}
        self._max_retries: dict[str, int] = {}
        self._concurrency: dict[str, int] = {}
        self._observers = ObserverGroup(_with_logging(observers))
        self._worker = Worker(
            self.store,
            self.clock,
            self.config,
            self._handlers,
            self._observers,
            timeouts=self._timeouts,
            concurrency=self._concurrency,
        )
        self._rescuer = LeaseRescuer(
            self.store,
            clock=self.clock,
            config=self.config,
            observer=self._observers,
            wake=self._worker.wake,
        )
        #: Schedules declared with `@periodic`, stored (reconciled) by `start()`.
        self._declared: dict[str, _Declared] = {}
        self._firer: ScheduleFirer | None = None
        if isinstance(store, ScheduleStore):
            self._firer = ScheduleFirer(
                store,
                clock=self.clock,
                config=self.config,
                observer=self._observers,
                max_retries=self._topic_max_retries,
                wake=self._wake_for,
            )
        #: Periodic duties, started and stopped with the worker.
        self._services: tuple[MaintenanceService, ...] = (
            (self._rescuer,) if self._firer is None else (self._rescuer, self._firer)
        )

    def __repr__(self) -> str:
        return f"Jobs({self.store!r}, topics={sorted(self._handlers)})"

    @property
    def observers(self) -> tuple[JobsObserver, ...]:
        """Who receives the worker's events, in call order (a default `LoggingObserver` first)."""
        return self._observers.observers

    @property
    def services(self) -> tuple[MaintenanceService, ...]:
        """The maintenance services `start()` runs beside the worker."""
        return self._services

    # -- handlers -----------------------------------------------------------------

    def register(
        self,
        topic: str,
        handler: Handler,
        *,
        timeout: Duration | None = None,
        max_retries: int | None = None,
        concurrency: int | None = None,
    ) -> None:
        """Run `handler(job)` for jobs of `topic`; `async def` or plain `def` (run in a thread).

        A handler succeeds by returning and fails by raising; a failed attempt is retried
        with backoff until the job's `max_retries` is used up. `timeout` replaces
        `JobsConfig.lock_duration` as this topic's execution timeout (its lease is
        renewed meanwhile); `max_retries` replaces `JobsConfig.max_retries` for jobs of
        this topic enqueued through this instance without one of their own;
        `concurrency` (a positive int) caps how many of this topic's jobs this worker runs
        at once (its claims take at most that many less those running; the worker pool
        still bounds the total). For a limit across every process, see `set_limit`.
        """
        check_topic(topic)
        if topic in self._handlers:
            raise TopicAlreadyRegistered(topic)
        if not callable(handler):
            raise TypeError(f"handler for {topic!r} must be callable, got {handler!r}")
        own_timeout = None if timeout is None else check_duration(timeout, "timeout")
        if max_retries is not None:
            check_max_retries(max_retries)
        if concurrency is not None:
            check_concurrency(concurrency)
        self._handlers[topic] = handler
        if own_timeout is not None:
            self._timeouts[topic] = own_timeout
        if max_retries is not None:
            self._max_retries[topic] = max_retries
        if concurrency is not None:
            self._concurrency[topic] = concurrency

    def handler(
        self,
        topic: str,
        *,
        timeout: Duration | None = None,
        max_retries: int | None = None,
        concurrency: int | None = None,
    ) -> Callable[[H], H]:
        """Decorator form of `register`: `@jobs.handler("send_email", timeout=...)`."""

        def decorate(fn: H) -> H:
            self.register(
                topic, fn, timeout=timeout, max_retries=max_retries, concurrency=concurrency
            )
            return fn

        return decorate

    @property
    def topics(self) -> frozenset[str]:
        """Topics with a registered handler (the only ones this worker claims)."""
        return frozenset(self._handlers)

    # -- enqueue ------------------------------------------------------------------

    def prepare(self, topic: str, payload: object, options: EnqueueOptions | None = None) -> Job:
        """Validate and build a new `pending` job without storing it.

        For adapters' transactional enqueue: build here, insert in your own transaction.
        """
        return self._prepare_all(topic, [payload], options)[0]

    def _prepare_all(
        self, topic: str, payloads: Iterable[object], options: EnqueueOptions | None
    ) -> list[Job]:
        """New `pending` jobs of one topic and options: those checked once, each payload
        on its own."""
        options = options if options is not None else EnqueueOptions()
        if not isinstance(options, EnqueueOptions):
            raise TypeError(f"options must be EnqueueOptions, got {type(options).__name__}")
        check_topic(topic)
        now = self.clock.now()
        run_at = now if options.run_at is None else check_time(options.run_at, "run_at")
        max_retries = (
            self._max_retries.get(topic, self.config.max_retries)
            if options.max_retries is None
            else check_max_retries(options.max_retries)
        )
        priority = 0 if options.priority is None else check_priority(options.priority)
        key = None if options.unique_key is None else check_unique_key(options.unique_key)
        max_size = self.config.max_payload_size
        return [
            transitions.new_job(
                job_id=new_job_id(),
                topic=topic,
                payload=canonical(payload, max_size),
                run_at=run_at,
                max_retries=max_retries,
                priority=priority,
                unique_key=key,
                now=now,
            )
            for payload in payloads
        ]

    async def enqueue(self, topic: str, payload: object) -> Job:
        """Queue a job to run as soon as a worker is free."""
        return await self.enqueue_with_options(topic, payload, EnqueueOptions())

    async def enqueue_at(self, topic: str, payload: object, run_at: datetime) -> Job:
        """Queue a job to run at `run_at` (timezone-aware; the past means now)."""
        return await self.enqueue_with_options(topic, payload, EnqueueOptions(run_at=run_at))

    async def enqueue_with_options(
        self, topic: str, payload: object, options: EnqueueOptions
    ) -> Job:
        """Queue a job with its own `run_at`, `max_retries`, `priority` and/or
        `unique_key` (a duplicate stores nothing and returns the job holding the key)."""
        job = self.prepare(topic, payload, options)
        if job.unique_key is None:  # the plain path, as cheap as before unique keys
            await self.store.insert([job])
            self._enqueued([job])
            return job
        return (await self._insert_keyed(job)).job

    async def submit(
        self, topic: str, payload: object, options: EnqueueOptions | None = None
    ) -> Enqueued:
        """Queue one job and say whether it is new: `Enqueued(job, new)`.

        Without a `unique_key` the job is always new. With one, while a `pending` or
        `processing` job of `topic` holds the key nothing is stored and the answer is
        that job with `new=False` (decided by the store in one atomic step, so racing
        callers, in any process, leave one active job)."""
        job = self.prepare(topic, payload, options)
        if job.unique_key is None:
            await self.store.insert([job])
            self._enqueued([job])
            return Enqueued(job, True)
        return await self._insert_keyed(job)

    async def _insert_keyed(self, job: Job) -> Enqueued:
        """Insert a job with a unique key: the store answers it, or the holder."""
        (stored,) = await self.store.insert([job])
        new = stored.id == job.id
        if new:  # a duplicate changed nothing: no worker to wake
            self._enqueued([stored])
        return Enqueued(stored, new)

    async def enqueue_many(
        self, topic: str, payloads: Iterable[object], options: EnqueueOptions | None = None
    ) -> EnqueuedJobs:
        """Queue one job per payload in one transaction: all are stored or none.

        With a `unique_key` in `options` each job is resolved on its own: the first of the
        batch is stored unless an active job holds the key, and the rest resolve to it.
        The answer is a `list[Job]` with `.new`, a flag per job."""
        jobs = self._prepare_all(topic, payloads, options)
        if not jobs:
            return EnqueuedJobs()
        if jobs[0].unique_key is None:
            await self.store.insert(jobs)
            self._enqueued(jobs)
            return EnqueuedJobs(jobs)
        stored = list(await self.store.insert(jobs))
        new = [after.id == before.id for before, after in zip(jobs, stored, strict=True)]
        answer = EnqueuedJobs(stored, new)
        if answer.added:
            self._enqueued(answer.added)
        return answer

    def _enqueued(self, jobs: Sequence[Job]) -> None:
        """New jobs were stored: tell the observers, wake the worker if one is due."""
        self._observers.enqueued(jobs)
        self._wake_if_due(jobs)

    def _wake_if_due(self, jobs: Sequence[Job]) -> None:
        now = self.clock.now()
        if any(job.run_at <= now and job.topic in self._handlers for job in jobs):
            self._worker.wake()

    # -- inspect ------------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        """The job with this id, or `JobNotFound`."""
        if not isinstance(job_id, str):
            raise JobNotFound(str(job_id))
        return await self.store.get(job_id)

    async def list(
        self,
        *,
        topic: str | None = None,
        status: JobStatus | str | None = None,
        limit: int = 20,
        offset: int = 0,
        payloads: bool = True,
        max_payload_bytes: int | None = None,
    ) -> JobPage:
        """A page of jobs, newest first, with the total under the same filters.

        `payloads=False` lists without payloads, attempt histories and results;
        `max_payload_bytes` bounds the bytes of the page's payloads, histories and results
        (see `JobQuery`; the page then says `truncated`).
        """
        if topic is not None:
            check_topic(topic)
        limit, offset = check_page(limit, offset)
        if max_payload_bytes is not None and (
            isinstance(max_payload_bytes, bool)
            or not isinstance(max_payload_bytes, int)
            or max_payload_bytes < 0
        ):
            raise InvalidOptions(
                f"max_payload_bytes must be a non-negative integer, got {max_payload_bytes!r}"
            )
        query = JobQuery(
            topic=topic,
            status=check_status(status),
            limit=limit,
            offset=offset,
            payloads=bool(payloads),
            max_payload_bytes=max_payload_bytes,
        )
        return await self.store.list(query)

    async def stats(self) -> JobStats:
        """Counts per status, total and success rate."""
        return JobStats.from_counts(await self.store.count_by_status())

    async def list_topics(self) -> Sequence[TopicInfo]:
        """Every topic with jobs or a stored policy, by name: its jobs counted per status,
        whether it is paused, and its global `max_running` limit."""
        return list(await self.store.topics())

    # -- topics -------------------------------------------------------------------

    async def pause(self, topic: str) -> None:
        """Stop every worker of every process claiming `topic` (stored; from their next
        poll). Running jobs finish; enqueueing still works; `resume` undoes it."""
        await self.store.set_paused(check_topic(topic), True)

    async def resume(self, topic: str) -> None:
        """Let workers claim `topic` again (a topic that was not paused stays as it is)."""
        await self.store.set_paused(check_topic(topic), False)
        if topic in self._handlers:
            self._worker.wake()

    async def set_limit(self, topic: str, *, max_running: int | None) -> None:
        """At most `max_running` jobs of `topic` in `processing` at once across every
        worker and process (stored; enforced by the claim itself). None removes the
        limit; 0 holds the topic like a pause. Lowering it stops no running job: claims
        wait until fewer run. A processing job whose lease expired counts until it is
        rescued (its handler may still be running)."""
        check_topic(topic)
        await self.store.set_max_running(topic, check_max_running(max_running))
        if topic in self._handlers:
            self._worker.wake()

    # -- schedules ----------------------------------------------------------------

    async def schedule(
        self,
        name: str,
        *,
        topic: str,
        payload: object = None,
        cron: str | None = None,
        every: timedelta | None = None,
        timezone: str = "UTC",
        misfire: Misfire = "latest",
        priority: int = 0,
        max_retries: int | None = None,
    ) -> Schedule:
        """Create or update the stored schedule `name`: a job of `topic` with `payload`
        at each slot of `cron` (in `timezone`; needs `jobs-core[cron]`) or of `every`
        (counted from the Unix epoch). Every running worker's maintenance fires due
        slots, each exactly once across processes; `misfire` says what happens to slots
        missed while nothing ran (`latest`, `all`, `skip`). An update keeps the
        schedule's pause state and, when the timing is unchanged, its next slot; a new
        timing starts from the next slot after now. Returns the schedule as stored."""
        store = self._schedule_store()
        check_schedule_name(name)
        check_topic(topic)
        check_timing(cron, every, timezone, misfire)
        now = self.clock.now()
        candidate = Schedule(
            name=name,
            topic=topic,
            payload=canonical(payload, self.config.max_payload_size),
            cron=cron,
            every=every,
            timezone=timezone,
            misfire=misfire,
            priority=check_priority(priority),
            max_retries=None if max_retries is None else check_max_retries(max_retries),
            next_fire_at=now,
            created=now,
            updated=now,
        )
        first = next_slot(candidate, now)
        if first >= NEVER:
            raise InvalidSchedule(f"cron {cron!r} never fires after {now.isoformat()}")
        return await store.save_schedule(attrs.evolve(candidate, next_fire_at=first))

    async def unschedule(self, name: str) -> None:
        """Delete the stored schedule (jobs it created stay); `ScheduleNotFound` if none."""
        if not await self._schedule_store().delete_schedule(check_schedule_name(name)):
            raise ScheduleNotFound(name)

    async def schedules(self) -> Sequence[Schedule]:
        """Every stored schedule, by name, with its next slot and last fired job."""
        return list(await self._schedule_store().list_schedules())

    async def get_schedule(self, name: str) -> Schedule:
        """The stored schedule `name`, or `ScheduleNotFound`."""
        return await self._schedule_store().get_schedule(check_schedule_name(name))

    async def pause_schedule(self, name: str) -> Schedule:
        """Stop firing the schedule (stored: every process); `resume_schedule` undoes it."""
        store = self._schedule_store()
        return await store.set_schedule_paused(
            check_schedule_name(name), True, now=self.clock.now()
        )

    async def resume_schedule(self, name: str) -> Schedule:
        """Fire the schedule again from its next slot after now (slots that passed while
        it was paused do not fire). A schedule that was not paused is left as it is."""
        store = self._schedule_store()
        stored = await store.get_schedule(check_schedule_name(name))
        if not stored.paused:
            return stored
        now = self.clock.now()
        return await store.set_schedule_paused(
            name, False, now=now, next_fire_at=next_slot(stored, now)
        )

    def periodic(
        self,
        timing: str | timedelta,
        *,
        topic: str | None = None,
        name: str | None = None,
        payload: object = None,
        timezone: str = "UTC",
        misfire: Misfire = "latest",
        priority: int = 0,
        max_retries: int | None = None,
        timeout: timedelta | None = None,
        concurrency: int | None = None,
    ) -> Callable[[H], H]:
        """Decorator: register the function as the handler of `topic` (default: its
        name) and declare a schedule `name` (default: the topic) firing it at each slot
        of `timing`, a cron expression or a `timedelta` (`every`). `start()` stores the
        declared schedules (created, or updated keeping their next slot when the
        timing is unchanged). A schedule no longer declared stays stored until
        `unschedule` removes it: deploying an older release must not delete it."""
        cron, every = (timing, None) if isinstance(timing, str) else (None, timing)

        def decorate(fn: H) -> H:
            chosen = topic if topic is not None else getattr(fn, "__name__", "")
            key = name if name is not None else chosen
            check_schedule_name(key)
            if key in self._declared:
                raise InvalidSchedule(f"schedule {key!r} is declared twice")
            check_topic(chosen)
            check_timing(cron, every, timezone, misfire)
            self.register(
                chosen, fn, timeout=timeout, max_retries=max_retries, concurrency=concurrency
            )
            self._declared[key] = _Declared(
                topic=chosen,
                payload=canonical(payload, self.config.max_payload_size),
                cron=cron,
                every=every,
                timezone=timezone,
                misfire=misfire,
                priority=check_priority(priority),
                max_retries=max_retries,
            )
            return fn

        return decorate

    async def reconcile_schedules(self) -> Sequence[Schedule]:
        """Store every schedule declared with `@periodic` (what `start()` does first)."""
        stored = []
        for key, spec in self._declared.items():
            stored.append(
                await self.schedule(
                    key,
                    topic=spec.topic,
                    payload=spec.payload,
                    cron=spec.cron,
                    every=spec.every,
                    timezone=spec.timezone,
                    misfire=spec.misfire,
                    priority=spec.priority,
                    max_retries=spec.max_retries,
                )
            )
        return stored

    def _schedule_store(self) -> ScheduleStore:
        if not isinstance(self.store, ScheduleStore):
            raise InvalidOptions(f"store {self.store!r} does not keep schedules")
        return self.store

    def _topic_max_retries(self, topic: str) -> int:
        return self._max_retries.get(topic, self.config.max_retries)

    def _wake_for(self, topic: str) -> None:
        if topic in self._handlers:
            self._worker.wake()

    # -- manage -------------------------------------------------------------------

    async def requeue(self, job_id: str) -> Job:
        """Give a `failed` or `cancelled` job a fresh start: `pending`, due now, retries
        reset.

        Raises `UniqueKeyTaken` (a `CannotRequeue`) if another active job of the topic
        holds the job's unique key, and `JobBusy` if the job changed under every
        compare-and-set round."""
        for _ in range(_CAS_ATTEMPTS):
            job = await self.get(job_id)
            after = transitions.requeue(job, now=self.clock.now())
            (applied,) = await self.store.update([transitions.update(job, after)])
            if applied:
                self._wake_if_due([after])
                return after
        # Every round lost: raise why if the job is now gone or not failed, else say busy.
        transitions.requeue(await self.get(job_id), now=self.clock.now())
        raise JobBusy(job_id, "requeue", _CAS_ATTEMPTS)

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job: a `pending` one is `cancelled` at once; a `processing` one gets a
        cancel request (`cancel_requested`), which its worker learns at its next lease
        renewal: it stops the handler (cancels an `async` one, abandons a thread) and the
        job ends `cancelled`, never retried. If the job completes first, it stays
        completed. Final jobs raise `CannotCancel`; `JobBusy` if the job changed under
        every compare-and-set round. Returns the job as stored by the cancel."""
        for _ in range(_CAS_ATTEMPTS):
            job = await self.get(job_id)
            after = transitions.cancel(job, now=self.clock.now())
            (applied,) = await self.store.update([transitions.update(job, after)])
            if applied:
                return after
        transitions.cancel(await self.get(job_id), now=self.clock.now())
        raise JobBusy(job_id, "cancel", _CAS_ATTEMPTS)

    async def delete(self, job_id: str) -> None:
        """Delete a `pending` or `failed` job; others raise `CannotDelete`.

        Raises `JobBusy` if the job changed under every compare-and-set round."""
        for _ in range(_CAS_ATTEMPTS):
            try:
                job = await self.get(job_id)
            except UnreadableJob as exc:
                await self._delete_unreadable(exc)
                return
            transitions.check_delete(job)
            if await self.store.delete(job.id, expected_status=job.status):
                return
        transitions.check_delete(await self.get(job_id))
        raise JobBusy(job_id, "delete", _CAS_ATTEMPTS)

    async def bulk_requeue(
        self,
        *,
        ids: Iterable[str] | None = None,
        topic: str | None = None,
        status: JobStatus | str | None = None,
        before: datetime | None = None,
        max_jobs: int = BULK_MAX,
        dry_run: bool = False,
    ) -> BulkResult:
        """`requeue` each selected job (`BulkSelection`: the `ids`, or the jobs matching
        `topic`, `status` and `before`, at most `max_jobs`); a job it is not legal for is
        skipped. `dry_run` only counts the selection."""
        selection = BulkSelection.of(
            ids=ids, topic=topic, status=status, before=before, max_jobs=max_jobs
        )
        return await run_bulk(self, self.requeue, selection, dry_run=dry_run)

    async def bulk_delete(
        self,
        *,
        ids: Iterable[str] | None = None,
        topic: str | None = None,
        status: JobStatus | str | None = None,
        before: datetime | None = None,
        max_jobs: int = BULK_MAX,
        dry_run: bool = False,
    ) -> BulkResult:
        """`delete` each selected job, as `bulk_requeue` selects and skips."""
        selection = BulkSelection.of(
            ids=ids, topic=topic, status=status, before=before, max_jobs=max_jobs
        )
        return await run_bulk(self, self.delete, selection, dry_run=dry_run)

    async def bulk_cancel(
        self,
        *,
        ids: Iterable[str] | None = None,
        topic: str | None = None,
        status: JobStatus | str | None = None,
        before: datetime | None = None,
        max_jobs: int = BULK_MAX,
        dry_run: bool = False,
    ) -> BulkResult:
        """`cancel` each selected job, as `bulk_requeue` selects and skips (running jobs
        get a cancel request, as with `cancel`)."""
        selection = BulkSelection.of(
            ids=ids, topic=topic, status=status, before=before, max_jobs=max_jobs
        )
        return await run_bulk(self, self.cancel, selection, dry_run=dry_run)

    async def _delete_unreadable(self, exc: UnreadableJob) -> None:
        """Delete a row that cannot be read, so an operator can remove it without SQL.

        The compare-and-set uses the row's status column when it could be read and is
        `pending` or `failed` (the statuses delete allows); otherwise the read error
        stands. (A stuck `processing` row is moved to `failed` by the claim or the
        rescue sweep that meets it.)
        """
        if exc.status in _DELETABLE and await self.store.delete(
            exc.job_id, expected_status=JobStatus(exc.status)
        ):
            return
        raise exc

    # -- run ----------------------------------------------------------------------

    async def start(self, *, topics: Iterable[str] | None = None) -> None:
        """Run the maintenance services and the worker in the background; returns once
        the worker is running. Schedules declared with `@periodic` are stored first.

        `topics` restricts the worker to some registered topics (say, one process for
        the slow ones, another for the rest); by default it claims every registered
        topic. A topic without a handler raises `InvalidOptions`."""
        only = None if topics is None else self._check_topics(topics)
        await self.reconcile_schedules()
        for service in self._services:
            await service.start()
        await self._worker.start(only)

    def _check_topics(self, topics: Iterable[str]) -> frozenset[str]:
        if isinstance(topics, str):  # "a,b" would be taken letter by letter
            raise InvalidOptions(f"topics must be a collection of topics, got {topics!r}")
        chosen = frozenset(topics)
        if not chosen:
            raise InvalidOptions("topics must name at least one registered topic")
        unknown = sorted(chosen - self._handlers.keys())
        if unknown:
            raise InvalidOptions(
                f"no handler is registered for topics {unknown}"
                f" (registered: {sorted(self._handlers)})"
            )
        return chosen

    async def run(self, *, topics: Iterable[str] | None = None) -> None:
        """Work in the foreground until SIGTERM or SIGINT, then stop gracefully and return.

        For a worker process: `start(topics=topics)`, then at the first signal `stop()`
        (stop claiming, wait up to `shutdown_grace` for running jobs, hand the rest back
        as `pending`). The signal handlers are set on the running loop for the duration
        and the previous ones put back after; further signals while stopping change
        nothing. Must be awaited in the main thread (only it receives signals; elsewhere
        raises `RuntimeError`): elsewhere, call `start()` and `stop()` yourself. The
        store stays open (`aclose()` or `async with jobs:` closes it)."""
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        with on_stop_signals(loop, stopping.set):
            await self.start(topics=topics)
            try:
                await stopping.wait()
            finally:
                await self.stop()

    async def stop(self, grace: Duration | None = None) -> None:
        """Stop the services and claiming; wait up to `grace` (default `shutdown_grace`)
        for running jobs, then cancel the rest and hand their claims back as `pending`."""
        wait = None if grace is None else check_grace(grace)
        # The worker stops claiming at once; the services end beside its grace period.
        services = asyncio.gather(*(service.stop() for service in self._services))
        try:
            await self._worker.stop(wait)
        finally:
            await services

    async def run_once(self) -> int:
        """Rescue expired leases, fire due schedules, claim one batch, run it to the
        end; how many jobs ran.

        Store errors propagate (the background loops report and retry them instead)."""
        await self._rescuer.run_once(self.clock.now())
        if self._firer is not None:
            await self._firer.run_once(self.clock.now())
        return await self._worker.run_once()

    @property
    def running(self) -> bool:
        """Whether the background worker runs."""
        return self._worker.running

    async def aclose(self) -> None:
        """Stop the worker and services (if running) and close the store."""
        if self._worker.running or any(service.running for service in self._services):
            await self.stop()
        await self.store.close()

    async def __aenter__(self) -> Jobs:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@attrs.frozen(kw_only=True)
class _Declared:
    """A schedule declared with `@periodic`, checked, waiting for `start()` to store it."""

    topic: str
    payload: object
    cron: str | None
    every: timedelta | None
    timezone: str
    misfire: Misfire
    priority: int
    max_retries: int | None


def _with_logging(observers: Sequence[JobsObserver]) -> list[JobsObserver]:
    """`observers`, after the default `LoggingObserver` unless they bring their own."""
    if not isinstance(observers, Sequence):
        raise TypeError(f"observers must be a sequence of observers, got {observers!r}")
    given = list(observers)
    if any(isinstance(observer, LoggingObserver) for observer in given):
        return given
    return [LoggingObserver(), *given]


__all__ = ["Jobs"]
