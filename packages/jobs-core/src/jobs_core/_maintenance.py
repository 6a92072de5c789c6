"""Periodic duties of a `Jobs` instance, each a small service of one shape.

A service runs `run_once(now)` every `interval` of the `Jobs` clock in a task of its
own, so duties fail apart from each other and from the claims: a failing run is
reported to the observers as a store error and the next one backs off (doubling up to
`STORE_BACKOFF_CAP`), and the service goes on. `Jobs.start()` and `Jobs.stop()` start
and stop the services with the worker. The lease rescuer is the first; the schedule
firer the second; retention belongs here too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from jobs_core import _transitions as transitions
from jobs_core._config import JobsConfig, store_backoff
from jobs_core._errors import CronUnavailable
from jobs_core._events import JobsObserver
from jobs_core._model import JobStatus
from jobs_core._schedules import due_slots, slot_jobs
from jobs_core._waiting import wait_until
from jobs_core.clock import Clock
from jobs_core.ports import JobStore, ScheduleStore

#: Most expired leases one sweep rescues (the rest wait for the next sweep).
RESCUE_LIMIT = 100
#: Most due schedules one tick of the firer fires (the rest wait for the next tick).
FIRE_LIMIT = 100

log = logging.getLogger("jobs_core.schedules")


class MaintenanceService:
    """A duty run every `interval`; subclass it and override `run_once`."""

    #: Names the duty in `store_error` reports and in its task's name.
    name = "maintenance"

    def __init__(self, *, clock: Clock, interval: timedelta, observer: JobsObserver) -> None:
        self.clock = clock
        self.interval = interval
        self.observer = observer
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(interval={self.interval}, running={self.running})"

    @property
    def running(self) -> bool:
        """Whether the service's loop runs."""
        return self._task is not None and not self._task.done()

    async def run_once(self, now: datetime) -> None:
        """Do the duty once, as of `now`; raise to have the next run back off."""
        raise NotImplementedError

    def backoff(self, failures: int) -> timedelta:
        """Wait after `failures` failed runs in a row before trying again."""
        return store_backoff(self.interval, failures)

    async def start(self) -> None:
        """Run the duty now and then every `interval`, in the background."""
        if self.running:
            return
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name=f"jobs-{self.name}")

    async def stop(self) -> None:
        """Let a run in progress finish (a store call is not cut off), then end."""
        if self._task is None:
            return
        self._stopping.set()
        try:
            await self._task
        finally:
            self._task = None

    async def _loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            began = self.clock.now()
            try:
                await self.run_once(began)
            except Exception as exc:  # noqa: BLE001 - a duty must outlive store errors
                failures += 1
                wait = self.backoff(failures)
                self.observer.store_error(self.name, exc, wait)
            else:
                if failures:
                    self.observer.store_recovered(self.name)
                failures = 0
                wait = began + self.interval - self.clock.now()
            if not self._stopping.is_set():
                await wait_until(self.clock, wait, self._stopping.wait())


class LeaseRescuer(MaintenanceService):
    """Takes jobs whose lease expired (their worker died or hung) from `processing`:
    each counts as a failed attempt, so it is retried after its backoff or, with no
    retries left, `failed`. Sweeps every `poll_interval`; wakes the worker when a job
    it handed back is due at once."""

    name = "rescue"

    def __init__(
        self,
        store: JobStore,
        *,
        clock: Clock,
        config: JobsConfig,
        observer: JobsObserver,
        wake: Callable[[], None] | None = None,
        limit: int = RESCUE_LIMIT,
    ) -> None:
        super().__init__(clock=clock, interval=config.poll_interval, observer=observer)
        self.store = store
        self.config = config
        self.limit = limit
        self._wake = wake

    async def run_once(self, now: datetime) -> None:
        """Rescue up to `limit` expired leases; report the jobs whose rescue was applied."""
        stale = await self.store.expired(now=now, limit=self.limit)
        if not stale:
            return
        backoff = self.config.backoff
        updates = [
            transitions.update(job, transitions.expire(job, now=now, backoff=backoff))
            for job in stale
        ]
        applied = await self.store.update(updates)
        rescued = [change.job for change, ok in zip(updates, applied, strict=True) if ok]
        if not rescued:
            return
        self.observer.rescued(rescued)
        if self._wake is not None and any(
            job.status is JobStatus.PENDING and job.run_at <= now for job in rescued
        ):
            self._wake()


class ScheduleFirer(MaintenanceService):
    """Fires due schedules: every `poll_interval`, one query for the unpaused schedules
    whose next slot came; for each, the slots `misfire` keeps become jobs, stored by
    `fire_schedule` (compare-and-set on `next_fire_at`, in the jobs' transaction), so
    the firers of every process may race and each slot still fires once. Wakes the
    worker when it stored a job for a topic this instance handles. A cron schedule in a
    process without the `jobs-core[cron]` extra is skipped with a warning (processes
    that have it fire it)."""

    name = "schedules"

    def __init__(
        self,
        store: ScheduleStore,
        *,
        clock: Clock,
        config: JobsConfig,
        observer: JobsObserver,
        max_retries: Callable[[str], int],
        wake: Callable[[str], None] | None = None,
        limit: int = FIRE_LIMIT,
    ) -> None:
        super().__init__(clock=clock, interval=config.poll_interval, observer=observer)
        self.store = store
        self.limit = limit
        self._max_retries = max_retries
        self._wake = wake

    async def run_once(self, now: datetime) -> None:
        """Fire every due schedule (up to `limit`) once, as of `now`."""
        for schedule in await self.store.due_schedules(now=now, limit=self.limit):
            try:
                firing = due_slots(schedule, now)
            except CronUnavailable as exc:  # stored by a process that has the extra
                log.warning("schedule %r not fired here: %s", schedule.name, exc)
                continue  # the other schedules still fire; a process with cronsim fires it
            jobs = slot_jobs(
                schedule, firing.slots, now=now, max_retries=self._max_retries(schedule.topic)
            )
            won = await self.store.fire_schedule(
                schedule.name,
                expected_next_fire_at=schedule.next_fire_at,
                next_fire_at=firing.next_fire_at,
                jobs=jobs,
            )
            if won and jobs and self._wake is not None:
                self._wake(schedule.topic)
