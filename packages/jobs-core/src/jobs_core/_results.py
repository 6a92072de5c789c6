"""Group-commit of job results: many workers' guarded writes, one store call.

A finished job hands its write over and is done; writes that arrive while a store call
is in flight wait for the next call and go together. Nothing is delayed on purpose:
batching comes only from writes piling up behind a slow commit. A failed store call is
retried with a capped backoff (the write is idempotent: it is guarded), so a database
blip does not leave a finished job `processing` while its worker lives. Nobody awaits a
single write (that cost a future and a task wake-up per job): a refusal is reported
through `on_refused`, and `on_settled` tells the worker that the backlog shrank.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta

from jobs_core._model import JobUpdate
from jobs_core.clock import Clock
from jobs_core.ports import JobStore

log = logging.getLogger("jobs_core.worker")

#: Most updates sent in one store call.
MAX_GROUP = 500
_RETRY_START = timedelta(milliseconds=100)
_RETRY_CAP = timedelta(seconds=5)

#: Called with a write the store refused (or that was given up on) and what it recorded.
OnRefused = Callable[[JobUpdate, str], None]


class ResultWriter:
    """Queues guarded writes and flushes them to the store in groups."""

    def __init__(
        self,
        store: JobStore,
        clock: Clock,
        *,
        on_refused: OnRefused,
        on_settled: Callable[[], None],
    ) -> None:
        self._store = store
        self._clock = clock
        self._on_refused = on_refused
        self._on_settled = on_settled
        self._queue: list[tuple[JobUpdate, str]] = []
        #: Updates in the store call now (they left the queue but are not written yet).
        self._sending = 0
        self._flusher: asyncio.Task[None] | None = None
        #: After `close`, a failing write is tried this many more times, then dropped.
        self._attempts_after_close: int | None = None

    @property
    def pending(self) -> int:
        """Writes submitted but not settled yet."""
        return len(self._queue) + self._sending

    def submit(self, update: JobUpdate, what: str) -> None:
        """Queue `update` for the next group; `what` names the result if it is refused."""
        self._queue.append((update, what))
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
                flags = await self._store.update([update for update, _ in group])
            except Exception as exc:  # noqa: BLE001 - any store failure is retried
                self._sending = 0
                failures += 1
                limit = self._attempts_after_close
                if limit is not None and failures > limit:
                    log.error(
                        "giving up on %d job results after %d tries: %s; their"
                        " leases will expire and the jobs be retried",
                        len(group),
                        failures,
                        exc,
                    )
                    for update, what in group:
                        self._on_refused(update, what)
                    self._on_settled()
                    failures = 0
                    continue
                log.warning(
                    "writing %d job results failed (%s); retrying in %.1fs",
                    len(group),
                    exc,
                    delay.total_seconds(),
                )
                self._queue[:0] = group
                await self._clock.sleep(delay)
                delay = min(delay * 2, _RETRY_CAP)
                continue
            self._sending = 0
            delay, failures = _RETRY_START, 0
            for (update, what), ok in zip(group, flags, strict=True):
                if not ok:
                    self._on_refused(update, what)
            self._on_settled()
