"""The worker: claims due jobs, runs their handlers on a bounded pool, records outcomes.

It only orchestrates: which transition applies is decided by `_transitions`, and every
write is a guarded `JobUpdate`, so a result that arrives after the lease was lost is
refused by the store rather than applied. The worker never dies from a handler's
exception or a store error; it reports them to its observers and backs off. (Periodic
duties, such as rescuing expired leases, are `_maintenance` services beside it.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from jobs_core import _transitions as transitions
from jobs_core._config import JobsConfig, margin_past, store_backoff
from jobs_core._deadlines import Deadline, DeadlineTimer
from jobs_core._endings import Ending, Failure, Returned, cause_traceback
from jobs_core._errors import InvalidResult, LockLost
from jobs_core._events import LATE_COMPLETION, ObserverGroup, Outcome
from jobs_core._heartbeat import Heartbeat, Lease
from jobs_core._model import Job, JobStatus, JSONValue
from jobs_core._payload import check_result
from jobs_core._results import ResultWriter
from jobs_core._signals import GiveUp, HandlerSignal, Retry, Snooze
from jobs_core._threads import run_in_daemon_thread
from jobs_core._waiting import wait_until
from jobs_core.clock import Clock
from jobs_core.ports import JobStore

Handler = Callable[[Job], Awaitable[Any] | Any]

#: First wait before listening for store notifications again (then doubling).
_WATCH_RETRY = timedelta(milliseconds=100)


def is_async_handler(handler: Handler) -> bool:
    """Whether calling `handler` gives a coroutine (async functions and async `__call__`)."""
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - we want the method, not callability
    )


class Worker:
    """Runs handlers for the registered topics of one `Jobs` instance."""

    def __init__(
        self,
        store: JobStore,
        clock: Clock,
        config: JobsConfig,
        handlers: Mapping[str, Handler],
        observer: ObserverGroup,
        *,
        timeouts: Mapping[str, timedelta] | None = None,
        concurrency: Mapping[str, int] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._config = config
        self._handlers = handlers
        #: Execution timeouts by topic, where a topic's registration set its own.
        self._timeouts: Mapping[str, timedelta] = timeouts if timeouts is not None else {}
        #: Per-worker limits by topic (`register(..., concurrency=N)`).
        self._concurrency: Mapping[str, int] = concurrency if concurrency is not None else {}
        #: The topic of each running job's task (for `concurrency`).
        self._task_topics: dict[asyncio.Task[None], str] = {}
        self._observer = observer
        self._heartbeat = Heartbeat(store, clock, config, observer)
        self._beating: asyncio.Task[None] | None = None
        self._beat_users = 0
        self._beat_stop = asyncio.Event()
        self._writer = self._new_writer()
        #: Execution timeouts of running handlers, on one shared timer.
        self._deadlines = DeadlineTimer(clock)
        #: Per topic: the handler last seen and whether it is async (inspect is slow).
        self._kinds: dict[str, tuple[Handler, bool]] = {}
        #: Claimed jobs whose handler has not returned yet: what the pool limits. (A
        #: job's task ends once its result is handed to the writer.)
        self._running: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False
        #: The topics `start(topics=)` restricted claims to; None: every registered one.
        self._only: frozenset[str] | None = None

    @property
    def running(self) -> bool:
        """Whether the claim loop runs."""
        return self._main is not None and not self._main.done()

    @property
    def in_flight(self) -> int:
        """Jobs whose handlers run now (abandoned threads not counted)."""
        return len(self._running)

    def _free_slots(self) -> int:
        """How many jobs to claim now.

        A slot frees when its handler returns, so the next claim overlaps the previous
        results' write instead of waiting for it. Jobs whose result is still being
        written are capped at one more pool's worth: a worker whose writes stall stops
        claiming rather than running jobs whose outcomes it cannot record.
        """
        pool = self._config.worker_pool_size
        running = len(self._running)
        return min(pool - running, 2 * pool - running - self._writer.pending)

    def wake(self) -> None:
        """Claim again now instead of at the next poll; safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._wake.set)

    async def start(self, topics: frozenset[str] | None = None) -> None:
        """Start claiming in the background (only `topics`, if given); returns once the
        loop runs."""
        if self.running:
            return
        self._only = topics
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._wake = asyncio.Event()
        self._writer = self._new_writer()  # the last stop() closed it
        started = asyncio.Event()
        self._main = asyncio.create_task(self._run(started), name="jobs-worker")
        self._watch = asyncio.create_task(self._watch_store(), name="jobs-watch")
        self._start_heartbeat()
        await started.wait()

    async def stop(self, grace: timedelta | None = None) -> None:
        """Stop claiming, wait up to `grace` for running jobs, then cancel and release the rest."""
        grace = self._config.shutdown_grace if grace is None else grace
        self._stopping = True
        self._wake.set()
        if self._main is not None:
            await self._main
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._running or self._writer.pending:
            await wait_until(self._clock, grace, self._settled())
        for task in list(self._running):
            task.cancel()  # _execute releases the job's claim
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        self._running.clear()  # tasks cancelled before they ever ran
        await self._stop_heartbeat()
        self._deadlines.close()
        await self._writer.close()
        self._main = self._watch = None
        self._only = None

    async def run_once(self) -> int:
        """Claim one batch and run it to the end; how many jobs ran."""
        self._loop = asyncio.get_running_loop()
        jobs = await self._claim(self._config.batch_size)
        tasks = [self._spawn(job) for job in jobs]
        if tasks:
            self._start_heartbeat()
            try:
                await asyncio.gather(*tasks)
            finally:
                await self._stop_heartbeat()
        await self._writer.flushed()
        return len(jobs)

    def _start_heartbeat(self) -> None:
        """Renew running jobs' leases in the background while anyone runs jobs (the
        loop of `start()`, and each `run_once()`): one heartbeat for all of them."""
        self._beat_users += 1
        if self._beating is None:
            self._beat_stop = asyncio.Event()
            self._beating = asyncio.create_task(
                self._heartbeat.run(self._beat_stop), name="jobs-heartbeat"
            )

    async def _stop_heartbeat(self) -> None:
        """Stop the heartbeat once its last user is done."""
        if self._beat_users == 0:  # stop() of a worker that never started
            return
        self._beat_users -= 1
        if self._beat_users == 0 and self._beating is not None:
            beating, self._beating = self._beating, None
            self._beat_stop.set()
            await beating

    def _new_writer(self) -> ResultWriter:
        return ResultWriter(
            self._store, self._clock, observer=self._observer, on_settled=self._results_settled
        )

    async def _settled(self) -> None:
        """Wait until every running job has finished and its result is written."""
        if self._running:
            await asyncio.wait(set(self._running))
        await self._writer.flushed()

    def _results_settled(self) -> None:
        self._wake.set()  # the write-backlog cap may have held a claim back

    # -- the loop ---------------------------------------------------------------

    async def _run(self, started: asyncio.Event) -> None:
        failures = 0
        started.set()
        while not self._stopping:
            self._wake.clear()
            free = self._free_slots()
            try:
                wanted = min(self._config.batch_size, free)
                jobs = await self._claim(wanted) if wanted > 0 else ()
            except Exception as exc:  # noqa: BLE001 - the worker must outlive store errors
                failures += 1
                delay = store_backoff(self._config.poll_interval, failures)
                self._observer.store_error("claim", exc, delay)
                await self._idle(delay)
                continue
            if failures:
                self._observer.store_recovered("claim")
                failures = 0
            for job in jobs:
                self._spawn(job)
            if wanted > 0 and len(jobs) == wanted:
                await asyncio.sleep(0)  # more may be due: claim again at once
                continue
            await self._idle(self._config.poll_interval)

    async def _idle(self, delay: timedelta) -> None:
        if not self._stopping:
            await wait_until(self._clock, delay, self._wake.wait())

    async def _watch_store(self) -> None:
        failures = 0
        while True:
            try:
                await self._store.watch(self.wake)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - polling covers for a dead listener
                failures += 1
                delay = store_backoff(_WATCH_RETRY, failures)
                self._observer.store_error("watch", exc, delay)
                await self._clock.sleep(delay)

    def _caps(self) -> dict[str, int]:
        """Per topic with a `concurrency` limit: how many more of it may run here now."""
        if not self._concurrency:
            return {}
        running: dict[str, int] = {}
        for task in self._running:
            topic = self._task_topics.get(task)
            if topic is not None:
                running[topic] = running.get(topic, 0) + 1
        return {
            topic: n - running.get(topic, 0)
            for topic, n in self._concurrency.items()
            if topic in self._handlers
        }

    async def _claim(self, limit: int) -> Sequence[Job]:
        caps = self._caps()
        only = self._only
        topics = [
            topic
            for topic in self._handlers
            if caps.get(topic, 1) > 0 and (only is None or topic in only)
        ]
        if not topics or limit <= 0:
            return ()
        now, lease = self._clock.now(), self._config.lease
        if caps:
            claimed = await self._store.claim(
                topics=topics, now=now, lease=lease, limit=limit, caps=caps
            )
        else:
            claimed = await self._store.claim(topics=topics, now=now, lease=lease, limit=limit)
        if claimed:
            self._observer.claimed(claimed)
        return claimed

    # -- one job ------------------------------------------------------------------

    def _spawn(self, job: Job) -> asyncio.Task[None]:
        task = asyncio.create_task(self._execute(job), name=f"job-{job.id}")
        self._running.add(task)
        if self._concurrency:
            self._task_topics[task] = job.topic
            task.add_done_callback(lambda done: self._task_topics.pop(done, None))
        return task

    async def _execute(self, job: Job) -> None:
        assert job.lock_token is not None
        task = asyncio.current_task()
        assert task is not None
        handler = self._handlers[job.topic]
        began = self._clock.now()
        timeout = self._timeouts.get(job.topic, self._config.lock_duration)
        self._observer.started(job)
        # At the deadline the timer cancels this task; `deadline.expired` tells that
        # cancellation from the one `stop()` sends (and from a lost lease's).
        deadline = self._deadlines.start(timeout, task.cancel)
        # Renewal ends where a lease taken at the claim (`updated`) for the whole timeout
        # would: the handler started a moment later, and the margin covers that.
        lease = self._heartbeat.hold(
            job, renew_until=job.updated + timeout + margin_past(timeout), stop=task.cancel
        )
        try:
            try:
                ending = await self._call(handler, job, deadline, began, lease)
            finally:
                deadline.cancel()
                self._running.discard(task)
                self._wake.set()  # a slot is free
        except asyncio.CancelledError:
            outcome, ending = Outcome.RELEASED, None
        else:
            outcome = (
                Outcome.COMPLETED
                if ending is None or type(ending) is Returned
                else Outcome.SNOOZED
                if isinstance(ending, Snooze)
                else Outcome.FAILED
            )
        job = await self._heartbeat.release(lease)
        if lease.lost:  # someone else has the job now: its outcome is not ours to write
            return
        if lease.cancelled and outcome is not Outcome.COMPLETED:
            outcome = Outcome.CANCELLED  # stopped at a cancel request: never retried
        self._record(job, began, outcome, ending)

    async def _call(
        self, handler: Handler, job: Job, deadline: Deadline, began: datetime, lease: Lease
    ) -> Ending:
        """Run the handler until it ends or `deadline` cancels it: None when it returned
        None, its `Returned` value, the `HandlerSignal` it raised, or its `Failure`."""
        value: Any = None
        try:
            if self._is_async(job.topic, handler):
                value = await handler(job)
            else:
                value = await self._in_thread(handler, job, deadline, began, lease)
        except asyncio.CancelledError:
            if not deadline.expired:
                raise  # stop() cancelled the job
        except HandlerSignal as signal:
            if not deadline.expired:
                return signal
        except Exception as exc:  # noqa: BLE001 - a handler's error is a failed attempt
            if not deadline.expired:
                return Failure.of(exc)
        if deadline.expired:  # however the handler ended, its time was up first
            task = asyncio.current_task()
            assert task is not None
            task.uncancel()  # the timeout's cancellation is handled: the job goes on
            return Failure(self._timed_out(job.topic))
        return None if value is None else Returned(value)

    async def _in_thread(
        self, handler: Handler, job: Job, deadline: Deadline, began: datetime, lease: Lease
    ) -> Any:
        """Run a plain `def` handler on its own thread; at the deadline or a cancel
        request the thread is abandoned (it cannot be cancelled) and its late result
        fenced, so that observers hear of it (`refused`, "late completion")."""
        running = run_in_daemon_thread(functools.partial(handler, job))
        try:
            return await asyncio.shield(running)  # a cancel must not cancel `running` itself
        except asyncio.CancelledError:
            if deadline.expired or lease.cancelled:
                running.add_done_callback(lambda done: self._late_result(job, began, done))
            raise

    def _timed_out(self, topic: str) -> str:
        """The error of an attempt that ran out of time, naming the setting to raise."""
        own = self._timeouts.get(topic)
        if own is None:
            seconds, setting = self._config.lock_duration.total_seconds(), "lock_duration"
        else:
            seconds, setting = own.total_seconds(), f"the timeout of topic {topic!r}"
        return f"timed out after {seconds:g}s ({setting})"

    def _is_async(self, topic: str, handler: Handler) -> bool:
        known = self._kinds.get(topic)
        if known is None or known[0] is not handler:
            known = self._kinds[topic] = (handler, is_async_handler(handler))
        return known[1]

    def _late_result(self, job: Job, began: datetime, done: asyncio.Future[Any]) -> None:
        """An abandoned thread finished: try its completion so fencing refuses it, visibly."""
        if done.cancelled() or done.exception() is not None:
            return  # a failure changes nothing: the attempt was recorded when abandoned
        loop = self._loop
        if loop is not None and not loop.is_closed():
            self._record(job, began, Outcome.COMPLETED, event=LATE_COMPLETION)

    def _record(
        self,
        job: Job,
        began: datetime,
        outcome: Outcome,
        ending: Ending = None,
        *,
        event: str | None = None,
        reconsider: bool = True,
    ) -> None:
        """Hand the run's guarded write to the result writer, which reports `finished`
        once it is written or `refused` if fencing turns it down.

        `outcome` is COMPLETED (with the `Returned` value, if any), RELEASED, CANCELLED,
        SNOOZED (with the `Snooze`), or FAILED with the `Failure` or the `Retry`/`GiveUp`
        raised (then RETRIED if it will run again); the job's status after the move
        settles which one is reported. A result that cannot be stored fails the attempt.
        `event` names a refusal if not the outcome. A refused write other than a
        completion is decided again from the stored row (`_decide_again`) unless
        `reconsider` is False (it is that second decision)."""
        token = job.lock_token
        assert token is not None
        now = self._clock.now()
        result: JSONValue = None
        if type(ending) is Returned:
            try:
                result = check_result(ending.value, self._config.max_payload_size)
            except InvalidResult as exc:
                outcome, ending = Outcome.FAILED, Failure(f"{type(exc).__name__}: {exc}")
        try:
            if outcome is Outcome.COMPLETED:
                after = transitions.complete(job, token=token, now=now, result=result)
            elif outcome is Outcome.RELEASED:
                after = transitions.release(job, token=token, now=now)
                if after.status is JobStatus.CANCELLED:
                    outcome = Outcome.CANCELLED
            elif outcome is Outcome.CANCELLED:
                after = transitions.abort(job, token=token, now=now)
            elif isinstance(ending, Snooze):
                after = transitions.snooze(job, token=token, now=now, delay=ending.delay)
                outcome = _REPORTED.get(after.status, Outcome.SNOOZED)
            elif isinstance(ending, GiveUp):
                after = transitions.give_up(
                    job,
                    token=token,
                    error=ending.reason,
                    now=now,
                    traceback=cause_traceback(ending),
                )
                outcome = _REPORTED.get(after.status, outcome)
            else:
                backoff = self._config.backoff
                if isinstance(ending, Retry):
                    failure = Failure(ending.reason, cause_traceback(ending))
                    if ending.after is not None:
                        backoff = functools.partial(_fixed, ending.after)
                else:
                    assert isinstance(ending, Failure), ending
                    failure = ending
                after = transitions.fail(
                    job,
                    token=token,
                    error=failure.error,
                    now=now,
                    backoff=backoff,
                    traceback=failure.traceback,
                )
                outcome = _REPORTED.get(after.status, Outcome.RETRIED)
        except LockLost:  # the lease ran out by our own clock: fenced before the store
            self._observer.refused(job, event or outcome.value)
            return
        again = None
        if reconsider and after.status is not JobStatus.COMPLETED:
            again = functools.partial(self._decide_again, job, began, outcome, ending)
        self._writer.submit(
            transitions.update(job, after),
            job,
            outcome,
            event or outcome.value,
            now - began,
            reconsider=again,
        )

    async def _decide_again(
        self, job: Job, began: datetime, outcome: Outcome, ending: Ending
    ) -> bool:
        """The store refused this run's write, decided from the job as claimed: if the row
        is still ours and holds a request that copy lacked (a client's cancel request,
        `REQUEST_FIELDS`), decide again from the row, which the new write then carries.
        False when the row is another's or changed otherwise: the refusal stands."""
        stored = await self._store.get(job.id)
        if stored.status is not job.status or stored.lock_token != job.lock_token:
            return False
        if all(getattr(stored, name) is None for name in transitions.REQUEST_FIELDS):
            return False
        self._record(stored, began, outcome, ending, reconsider=False)
        return True


#: The outcome reported for a failed or snoozed run, by the status it ended in (a job
#: that will run again is absent: RETRIED or SNOOZED).
_REPORTED = {JobStatus.FAILED: Outcome.FAILED, JobStatus.CANCELLED: Outcome.CANCELLED}


def _fixed(delay: timedelta, retry: int) -> timedelta:
    """A backoff that is `delay` whatever the retry number (a handler's `Retry(after=)`)."""
    return delay
