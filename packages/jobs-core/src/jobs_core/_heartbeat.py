"""Lease renewal for running jobs: the crash-recovery lease stays short while a long
handler keeps its job.

A claim leases a job for `JobsConfig.lease` (`lease_duration` at most). While its handler
runs, the worker holds the lease here; every `renew_interval` one `JobStore.renew` call
renews every held lease at least half an interval old, each under a new lock token, and
hands back the stored job (so the worker hears of a cancel request; a lease that already
covers the timeout is renewed for that too). Renewal never reaches past the execution
timeout (plus margin), so a hung handler cannot keep its job. A renewal the store
refuses, or one the worker's own clock says came too late, means the lease is lost: the
handler is stopped and nothing is recorded for it (the job was rescued, or changed, by
someone else). So does a renewal still unanswered when a lease it renews ends by the
worker's clock (a partitioned link hangs a call, with no error, for as long as TCP keeps
trying): the worker cannot tell that lease from a lost one any more, and a rescuer may
already run the job elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from jobs_core import _transitions as transitions
from jobs_core._config import JobsConfig, store_backoff
from jobs_core._errors import LockLost, StoreUnavailable
from jobs_core._events import ObserverGroup
from jobs_core._ids import new_lock_token
from jobs_core._model import Job, JobUpdate
from jobs_core._waiting import wait_until
from jobs_core.clock import Clock
from jobs_core.ports import JobStore

_NOTHING = timedelta(0)

#: The event name observers hear (`refused`) when a lease is lost at renewal.
LEASE_LOST = "renew"


@attrs.define(eq=False)
class Lease:
    """One running job's lease, as the worker holds it.

    `job` is the job as last leased (its `lock_token` is the live one); `renew_until`
    is the end of its execution timeout and margin, past which it is never renewed;
    `stop` stops its handler when the lease is lost.
    """

    job: Job
    renew_until: datetime
    stop: Callable[[], object]
    lost: bool = False
    #: A renewal found a cancel request on the job: its handler was stopped for it.
    cancelled: bool = False
    #: Set while a renewal of this lease is in flight: its result must be known before
    #: the job's outcome is written (under whichever token the renewal left).
    renewing: asyncio.Future[None] | None = None


class Heartbeat:
    """Renews the leases of the jobs a worker runs, in one store call per round."""

    def __init__(
        self, store: JobStore, clock: Clock, config: JobsConfig, observer: ObserverGroup
    ) -> None:
        self._store = store
        self._clock = clock
        self._config = config
        self._observer = observer
        self._held: dict[str, Lease] = {}
        #: Set when a lease is held: the loop then starts its rounds. While nothing is
        #: held it waits on this, not on the clock.
        self._needed = asyncio.Event()

    def hold(self, job: Job, *, renew_until: datetime, stop: Callable[[], object]) -> Lease:
        """Start renewing `job`'s lease (until `renew_until`) while its handler runs."""
        lease = Lease(job, renew_until, stop)
        self._held[job.id] = lease
        self._needed.set()
        return lease

    async def release(self, lease: Lease) -> Job:
        """Stop renewing `lease`; the job as last leased, once no renewal is in flight."""
        if self._held.get(lease.job.id) is lease:
            del self._held[lease.job.id]
        if lease.renewing is not None:
            await asyncio.shield(lease.renewing)
        return lease.job

    async def run(self, stopped: asyncio.Event) -> None:
        """Renew in rounds until `stopped` is set; store errors are reported and retried
        sooner (the leases may run out meanwhile: then the next round finds them lost)."""
        failures = 0
        while not stopped.is_set():
            if not self._held:
                self._needed.clear()
                await _first(self._needed.wait(), stopped.wait())
                if stopped.is_set():
                    return
                await wait_until(self._clock, self._config.renew_interval / 2, stopped.wait())
                continue
            delay = self._config.renew_interval
            try:
                await self.beat()
            except Exception as exc:  # noqa: BLE001 - the worker must outlive store errors
                failures += 1
                delay = min(delay, store_backoff(self._config.poll_interval, failures))
                self._observer.store_error("renew", exc, delay)
            else:
                if failures:
                    self._observer.store_recovered("renew")
                    failures = 0
            await wait_until(self._clock, delay, stopped.wait())

    async def beat(self) -> None:
        """One round: renew every held lease at least half a renewal interval old (its
        job then checks in even when its lease already covers its timeout: that is how
        the worker learns of a cancel request)."""
        now = self._clock.now()
        half = self._config.renew_interval / 2
        due: list[tuple[Lease, Job]] = []
        for lease in list(self._held.values()):
            job = lease.job
            assert job.lock_token is not None
            assert job.locked_until is not None
            length = min(self._config.lease, lease.renew_until - now)
            if lease.lost or now - job.updated < half or length <= _NOTHING:
                continue
            try:
                renewed = transitions.renew(
                    job, token=job.lock_token, now=now, lease=length, new_token=new_lock_token()
                )
            except LockLost:  # by our own clock the lease already ran out
                self._lose(lease)
                continue
            due.append((lease, renewed))
        if not due:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for lease, _ in due:
            lease.renewing = done
        first_end = min(lease.job.locked_until or now for lease, _ in due)
        try:
            results = await self._renew_before(
                [transitions.update(lease.job, renewed) for lease, renewed in due],
                first_end - now,
            )
        except BaseException as exc:
            for lease, _ in due:
                lease.renewing = None
            if isinstance(exc, _Unanswered):  # the leases that ended meanwhile are lost
                ended = self._clock.now()
                for lease, _ in due:
                    if lease.job.locked_until is None or lease.job.locked_until <= ended:
                        self._lose(lease)
            done.set_result(None)
            raise
        for (lease, _), stored in zip(due, results, strict=True):
            lease.renewing = None
            if stored is None:
                self._lose(lease)
                continue
            lease.job = stored
            if stored.cancel_requested is not None and not lease.cancelled:
                lease.cancelled = True
                if self._held.get(stored.id) is lease:  # the handler still runs
                    lease.stop()
        done.set_result(None)

    async def _renew_before(
        self, renewals: list[JobUpdate], limit: timedelta
    ) -> Sequence[Job | None]:
        """`store.renew(renewals)`, given up (cancelled) if it has not answered within
        `limit` of the clock, when the first of their leases ends."""
        call = asyncio.ensure_future(self._store.renew(renewals))
        timer = asyncio.ensure_future(self._clock.sleep(limit))
        try:
            await asyncio.wait({call, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            unanswered = not call.done()
            if unanswered:
                call.cancel()
                call.add_done_callback(_drop_outcome)
        if unanswered:
            raise _Unanswered(
                f"the store did not answer a lease renewal within {limit.total_seconds():g}s,"
                " before the lease ended"
            )
        return call.result()

    def _lose(self, lease: Lease) -> None:
        """Mark `lease` lost and stop its handler, unless the handler already ended (its
        outcome then waits in `release` and is dropped, as `lease.lost` tells)."""
        lease.lost = True
        held = self._held.get(lease.job.id) is lease
        if held:
            del self._held[lease.job.id]
        self._observer.refused(lease.job, LEASE_LOST)
        if held:
            lease.stop()


class _Unanswered(StoreUnavailable):
    """A renewal call got no answer before a lease it renews ended."""


def _drop_outcome(call: asyncio.Future[Any]) -> None:
    """Collect what an abandoned call ended with: nobody waits for it any more."""
    if not call.cancelled():
        call.exception()


async def _first(*waits: Awaitable[object]) -> None:
    """Wait until the first of `waits` is done; cancel the others."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
