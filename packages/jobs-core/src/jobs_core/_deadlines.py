"""One timer on the `Clock` for many deadlines (the execution timeouts of running jobs).

A task sleeping per running job costs more CPU than a short job itself; here deadlines
sit in a heap and a single task sleeps until the earliest one. Deadlines judged by
`clock.now()` keep working with a `FakeClock`: the timer sleeps on the clock, so
`advance` wakes it. The timer task exists only while some deadline is pending, so an
idle worker leaves no sleeper behind; it starts on the loop's next round, so a job that
finishes without yielding costs no task at all.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from jobs_core.clock import Clock

log = logging.getLogger("jobs_core.worker")

#: Cancelled deadlines left in the heap beyond this (and beyond the live ones) are swept.
_SWEEP_SLACK = 64


class Deadline:
    """One pending deadline: `cancel` it when the work ends in time; `expired` tells
    whether `on_expire` ran."""

    __slots__ = ("_on_expire", "_timer", "active", "expired", "when")

    def __init__(self, when: datetime, on_expire: Callable[[], object], timer: DeadlineTimer):
        self.when = when
        self.active = True
        self.expired = False
        self._on_expire = on_expire
        self._timer = timer

    def cancel(self) -> None:
        """Forget this deadline (no-op once it expired or was cancelled)."""
        if self.active:
            self.active = False
            self._timer._forget()

    def _expire(self) -> None:
        self.active = False
        self.expired = True
        self._on_expire()


class DeadlineTimer:
    """Calls each deadline's `on_expire` once the clock reaches it, unless cancelled first."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._heap: list[tuple[datetime, int, Deadline]] = []
        self._order = itertools.count()
        self._live = 0
        self._task: asyncio.Task[None] | None = None
        #: When the sleeping timer task wakes; None while it is not sleeping.
        self._wakes_at: datetime | None = None
        #: The loop on which `_arm` is scheduled to start the timer task, if any.
        self._arming: asyncio.AbstractEventLoop | None = None

    def start(self, delay: timedelta, on_expire: Callable[[], object]) -> Deadline:
        """A deadline `delay` from now; `on_expire` runs on the event loop when it passes."""
        when = self._clock.now() + delay
        deadline = Deadline(when, on_expire, self)
        heapq.heappush(self._heap, (when, next(self._order), deadline))
        self._live += 1
        loop = asyncio.get_running_loop()
        task = self._task
        if task is None or task.done() or task.get_loop() is not loop:
            # none yet, or it died (a clock whose sleep raised), or its loop is gone
            self._task = None
            self._schedule_arm(loop)
        elif self._wakes_at is not None and when < self._wakes_at:
            self._stop_task()  # it sleeps past the new, earlier deadline
            self._schedule_arm(loop)
        return deadline

    def close(self) -> None:
        """Drop every deadline without running it and stop the timer task."""
        self._heap.clear()
        self._live = 0
        self._stop_task()

    def _forget(self) -> None:
        self._live -= 1
        if self._live == 0:
            self.close()
        elif len(self._heap) > 2 * self._live + _SWEEP_SLACK:
            self._heap = [entry for entry in self._heap if entry[2].active]
            heapq.heapify(self._heap)

    def _stop_task(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
            self._wakes_at = None

    def _schedule_arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._arming is not loop:
            self._arming = loop
            loop.call_soon(self._arm, loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self._arming = None
        if self._live > 0 and self._task is None:
            self._task = loop.create_task(self._run(), name="jobs-timeouts")

    async def _run(self) -> None:
        heap = self._heap
        while True:
            if heap is not self._heap:  # swept meanwhile
                heap = self._heap
            while heap and not heap[0][2].active:
                heapq.heappop(heap)
            if not heap:
                if self._task is asyncio.current_task():
                    self._task = None
                return
            when = heap[0][0]
            now = self._clock.now()
            if when > now:
                self._wakes_at = when
                await self._clock.sleep(when - now)
                self._wakes_at = None
                continue
            _, _, deadline = heapq.heappop(heap)
            self._live -= 1
            try:
                deadline._expire()
            except Exception:  # one failing callback must not stop the others
                log.exception("a deadline callback failed")
