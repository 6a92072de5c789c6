"""Group-commit of job results: many workers' guarded writes, one store call.

A finished job hands its write over and is done; writes that arrive while a store call
is in flight wait for the next call and go together. Nothing is delayed on purpose:
batching comes only from writes piling up behind a slow commit. A failed store call is
retried with a capped backoff (the write is idempotent: it is guarded), so a database
blip does not leave a finished job `processing` while its worker lives. Nobody awaits a
single write (that cost a future and a task wake-up per job): each written result is
reported to the observer as `finished`, each refused one as `refused`, and `on_settled`
tells the worker that the backlog shrank. A refused write may come with a second
thought (`reconsider`): the worker's decision, made again from the row as stored, which
is how a failure written blind to a cancel request becomes the cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from jobs_core._events import ObserverGroup, Outcome
from jobs_core._model import Job, JobUpdate
from jobs_core.clock import Clock
from jobs_core.ports import JobStore

#: Most updates sent in one store call.
MAX_GROUP = 500
_RETRY_START = timedelta(milliseconds=100)
_RETRY_CAP = timedelta(seconds=5)
_FAILURES = frozenset({Outcome.RETRIED, Outcome.FAILED})

#: Decides a refused run's outcome again from the stored row and submits that write;
#: False when there is nothing to decide again (the refusal then stands).
Reconsider = Callable[[], Awaitable[bool]]

#: A queued result: its write, the job as claimed, the outcome, the event a refusal
#: names, the handler's run time, and what to do if the write is refused.
_Result = tuple[JobUpdate, Job, Outcome, str, timedelta, Reconsider | None]


class ResultWriter:
    """Queues guarded writes and flushes them to the store in groups."""

    def __init__(
        self,
        store: JobStore,
        clock: Clock,
        *,
        observer: ObserverGroup,
        on_settled: Callable[[], None],
    ) -> None:
        self._store = store
        self._clock = clock
        self._observer = observer
        self._on_settled = on_settled
        self._queue: list[_Result] = []
        #: Updates in the store call now (they left the queue but are not written yet).
        self._sending = 0
        self._flusher: asyncio.Task[None] | None = None
        #: After `close`, a failing write is tried this many more times, then dropped.
        self._attempts_after_close: int | None = None

    @property
    def pending(self) -> int:
        """Writes submitted but not settled yet."""
        return len(self._queue) + self._sending

    def submit(
        self,
        update: JobUpdate,
        job: Job,
        outcome: Outcome,
        event: str,
        duration: timedelta,
        *,
        reconsider: Reconsider | None = None,
    ) -> None:
        """Queue `update` (the run of `job`, as claimed) for the next group; if the store
        refuses it, `reconsider` (when given) gets a say before the refusal is reported."""
        self._queue.append((update, job, outcome, event, duration, reconsider))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush(), name="jobs-result-writer"
            )

    async def flushed(self) -> None:
        """Return once every write submitted so far has settled.

        Cancelling the caller leaves the writes going.
        """
        while self._flusher is not None and not self._flusher.done():
            await asyncio.wait({self._flusher})

    async def close(self, attempts: int = 3) -> None:
        """Flush what is queued; give each failing group `attempts` more tries."""
        self._attempts_after_close = attempts
        if self._flusher is not None:
            await self._flusher

    async def _flush(self) -> None:
        delay = _RETRY_START
        failures = 0
        while self._queue:
            group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
            self._sending = len(group)
            try:
                flags = await self._store.update([result[0] for result in group])
            except Exception as exc:  # noqa: BLE001 - any store failure is retried
                self._sending = 0
                failures += 1
                limit = self._attempts_after_close
                if limit is not None and failures > limit:
                    self._observer.store_error("write", exc, None)  # given up
                    for _, job, _, event, _, _ in group:
                        self._observer.refused(job, event)
                    self._on_settled()
                    failures = 0
                    continue
                self._observer.store_error("write", exc, delay)
                self._queue[:0] = group
                await self._clock.sleep(delay)
                delay = min(delay * 2, _RETRY_CAP)
                continue
            self._sending = 0
            if failures:
                self._observer.store_recovered("write")
            delay, failures = _RETRY_START, 0
            observer = self._observer
            second: list[tuple[Job, str, Reconsider]] = []
            for (update, job, outcome, event, duration, again), ok in zip(
                group, flags, strict=True
            ):
                if ok:
                    error = update.job.last_error if outcome in _FAILURES else None
                    observer.finished(update.job, outcome, duration, error)
                elif again is not None:
                    second.append((job, event, again))
                else:
                    observer.refused(job, event)
            if second:
                await self._reconsider(second)
            self._on_settled()

    async def _reconsider(self, refused: list[tuple[Job, str, Reconsider]]) -> None:
        """Give each refused write its second thought; report the refusals that stand."""
        self._sending = len(refused)  # still unsettled while they are decided again
        try:
            for job, event, again in refused:
                try:
                    handled = await again()
                except Exception as exc:  # noqa: BLE001 - a failed re-read leaves the refusal
                    self._observer.store_error("write", exc, None)
                    handled = False
                if not handled:
                    self._observer.refused(job, event)
        finally:
            self._sending = 0
