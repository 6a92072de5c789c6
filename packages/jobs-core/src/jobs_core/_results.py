"""Group-commit of job results: many workers' guarded writes, one store call.

Each finished job awaits its own write; writes that arrive while a store call is in
flight wait for the next call and go together. Nothing is delayed on purpose: batching
comes only from writes piling up behind a slow commit. A failed store call is retried
with a capped backoff (the write is idempotent: it is guarded), so a database blip does
not leave a finished job `processing` while its worker lives.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from jobs_core._model import JobUpdate
from jobs_core.clock import Clock
from jobs_core.ports import JobStore

log = logging.getLogger("jobs_core.worker")

#: Most updates sent in one store call.
MAX_GROUP = 500
_RETRY_START = timedelta(milliseconds=100)
_RETRY_CAP = timedelta(seconds=5)


class ResultWriter:
    """Queues guarded writes and flushes them to the store in groups."""

    def __init__(self, store: JobStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._queue: list[tuple[JobUpdate, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None
        #: After `close`, a failing write is tried this many more times, then dropped.
        self._attempts_after_close: int | None = None

    async def write(self, update: JobUpdate) -> bool:
        """Apply `update` (in some group); True if the store accepted it.

        Cancelling the caller does not withdraw the write: it stays queued and is sent
        (the flusher skips the answer nobody waits for).
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((update, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="jobs-result-writer")
        return await future

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
            try:
                flags = await self._store.update([update for update, _ in group])
            except Exception as exc:  # noqa: BLE001 - any store failure is retried
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
                    for _, future in group:
                        if not future.done():
                            future.set_result(False)
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
            delay, failures = _RETRY_START, 0
            for (_, future), ok in zip(group, flags, strict=True):
                if not future.done():
                    future.set_result(ok)
