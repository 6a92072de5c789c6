"""The `JobStore` port: what the core needs from a database, and nothing more.

Stores persist what the core decided. The one decision a store makes is which jobs a
claim picks; `jobs_core.testing.contract` pins that (and everything else here) against
`MemoryStore`. All methods are coroutines; a store connects and creates its schema
lazily and idempotently on first use. Database failures surface as `StoreUnavailable`
(retry later) or `StoreError`, raised *from* the driver's exception.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

import attrs

from jobs_core._model import Job, JobPage, JobQuery, JobStatus, JobUpdate
from jobs_core._schedules import Schedule
from jobs_core._topics import TopicInfo
from jobs_core.clock import Clock

__all__ = [
    "Clock",
    "JobStore",
    "MigratableStore",
    "NumberedStep",
    "ScheduleStore",
    "SchemaVersion",
    "check_steps",
]


@attrs.frozen(kw_only=True)
class SchemaVersion:
    """Where a store's database schema stands against the layout this code knows.

    `current` is the highest migration step applied (None: no jobs schema yet);
    `latest` the highest step this release has. Steps are numbered from 1, the first
    released layout.
    """

    current: int | None
    latest: int

    @property
    def behind(self) -> bool:
        """Whether migrating would change the database (no schema, or older steps)."""
        return self.current is None or self.current < self.latest

    @property
    def ahead(self) -> bool:
        """Whether the database is newer than this release (it refuses to write)."""
        return self.current is not None and self.current > self.latest


class NumberedStep(Protocol):
    """One migration step as `check_steps` sees it: its number and its name."""

    @property
    def version(self) -> int: ...

    @property
    def name(self) -> str: ...


def check_steps(steps: Sequence[NumberedStep]) -> None:
    """Raise `AssertionError` unless `steps` are numbered 1, 2, 3... in order with no gap
    and no name twice: the one rule every store's migration list follows."""
    numbers = [step.version for step in steps]
    if numbers != list(range(1, len(numbers) + 1)):
        raise AssertionError(f"migration steps must be numbered 1..n in order, got {numbers}")
    names = [step.name for step in steps]
    if len(set(names)) != len(names):
        raise AssertionError(f"migration steps must have distinct names, got {names}")


@runtime_checkable
class MigratableStore(Protocol):
    """A store whose database has a numbered schema (every SQL store).

    Stores migrate on first use by default; these let an operator do it before a deploy
    (`jobs migrate`) or check that it was done (`jobs migrate --check`).
    """

    async def schema_version(self) -> SchemaVersion:
        """The schema's state, read without writing or creating anything."""
        ...

    async def migrate(self) -> SchemaVersion:
        """Create or upgrade the schema to `latest`, step by step in order, under the
        store's cross-process lock, keeping every row; idempotent. Raises `SchemaTooNew`
        (writing nothing) when the database is ahead of this release."""
        ...


@runtime_checkable
class JobStore(Protocol):
    """Persistence of jobs. Every write is atomic; multi-job writes are one transaction."""

    async def insert(self, jobs: Sequence[Job]) -> Sequence[Job]:
        """Store new jobs (all or none) and answer, per job in order, the job that holds
        its place. Wakes watchers if one of them is due.

        A job with a `unique_key` is stored only if no `pending` or `processing` job of
        its topic holds that key (stored before, or earlier in the same batch); else
        nothing is stored for it and its answer is the holder (another id). The check
        and the write are one atomic step, across processes too (a partial unique index
        and `INSERT ... ON CONFLICT DO NOTHING` in the SQL stores). Jobs without a key
        are stored as they are, at no extra cost, and answered as given.
        """
        ...

    async def get(self, job_id: str) -> Job:
        """The job with this id; `JobNotFound` if none (also for ids that are not UUIDs)."""
        ...

    async def list(self, query: JobQuery) -> JobPage:
        """Jobs matching the filters, newest first (`created`, then `id`, descending).

        `total` counts every match, not just this page; an offset past the end gives
        an empty page with the right total.
        """
        ...

    async def count_by_status(self) -> Mapping[JobStatus, int]:
        """How many jobs are in each status (statuses with none may be left out)."""
        ...

    async def claim(
        self,
        *,
        topics: Collection[str],
        now: datetime,
        lease: timedelta,
        limit: int,
        caps: Mapping[str, int] | None = None,
    ) -> Sequence[Job]:
        """Lease up to `limit` due `pending` jobs of `topics`, as one atomic step.

        Picks jobs with `run_at <= now` in `CLAIM_ORDER` (`priority` descending, then
        `run_at`, then `id`; a job not yet due is never picked, whatever its priority,
        and holds no due job back), skipping the jobs of a topic once it has no
        allowance left (`jobs_core._topics.claim_allowances`): a paused topic has none,
        a limited one its `max_running` less its `processing` rows (counted in the
        claim's own statement or transaction, serialised per limited topic, so claims of
        all processes together never exceed it), a topic in `caps` at most its cap for
        this claim (a worker's own `concurrency=`). It moves each picked job to
        `processing` with `locked_until = now + lease`, `updated = now` and a fresh,
        unique `lock_token`, exactly as `jobs_core`'s `claim` transition does. No job is
        ever handed to two claims while its lease holds, even across processes.
        Returns the claimed jobs in that order.
        """
        ...

    async def set_paused(self, topic: str, paused: bool) -> None:
        """Pause (`True`) or resume a topic: stored, so claims of every process skip a
        paused topic's jobs from their next statement. Idempotent."""
        ...

    async def set_max_running(self, topic: str, max_running: int | None) -> None:
        """Set the topic's global limit of `processing` jobs (None: no limit; 0: none
        run, like a pause). Already running jobs are never stopped; the limit holds
        claims back until fewer run. Idempotent."""
        ...

    async def topics(self) -> Sequence[TopicInfo]:
        """Every topic with a job or a policy, by name: its jobs counted per status
        (every status present), whether it is paused and its `max_running`."""
        ...

    async def expired(self, *, now: datetime, limit: int) -> Sequence[Job]:
        """Up to `limit` `processing` jobs whose lease ran out (`locked_until < now`).

        Ordered by (`locked_until`, `id`). Reading them takes no lock; the rescue is a
        guarded `update`, so racing rescuers and late workers cannot both win.
        """
        ...

    async def update(self, updates: Sequence[JobUpdate]) -> Sequence[bool]:
        """Apply guarded writes in one transaction; one flag per update, in order.

        Each write stores the mutable fields of `update.job` only if the row still has
        `expected_status` and `expected_lock_token` (compare-and-set); otherwise it
        changes nothing and its flag is False. A write that makes a job due wakes
        watchers. A write that would make a final job with a `unique_key` active while
        another active job of its topic holds the key (a requeue) raises
        `UniqueKeyTaken`, and the whole batch changes nothing.
        """
        ...

    async def renew(self, renewals: Sequence[JobUpdate]) -> Sequence[Job | None]:
        """Extend leases in one transaction; per renewal, in order, the job as stored
        after it, or None if the lease is lost.

        Each renewal's `job` is what `jobs_core`'s `renew` transition made: the store
        writes only its `RENEW_FIELDS` (the lease end, the new lock token, `updated`),
        and only if the row still has `expected_status` and either `expected_lock_token`
        or the renewal's own new token (so a renewal repeated after a lost reply finds
        its own write and succeeds again). Every other field keeps its stored value,
        and the returned job carries it (a cancel request, say): the worker learns of
        changes to its running jobs from its renewals.
        """
        ...

    async def delete(self, job_id: str, *, expected_status: JobStatus) -> bool:
        """Delete the job if it is still in `expected_status`; False if it is not (or gone)."""
        ...

    async def delete_finished(
        self, *, statuses: Collection[JobStatus], before: datetime, limit: int
    ) -> int:
        """Delete up to `limit` jobs whose status is one of `statuses` and whose `updated` is
        earlier than `before`, oldest `updated` first (then `id`); return how many went.
        `statuses` must be final statuses (`jobs_core.FINAL_STATUSES`: completed, failed);
        anything else is `InvalidOptions`, and so is `limit < 1` or an empty `statuses`.
        One atomic statement per call; a retention duty calls it repeatedly until it returns
        less than `limit`, so no call holds a long lock."""
        ...

    async def watch(self, on_new_work: Callable[[], None]) -> None:
        """Call `on_new_work` whenever work may have become due, until cancelled.

        Stores that can hear other processes (PostgreSQL LISTEN/NOTIFY) do so here and
        keep listening across reconnects; others may only report their own process's
        writes, or nothing (the worker still polls).
        """
        ...

    async def close(self) -> None:
        """Release connections. The store is not used afterwards."""
        ...


@runtime_checkable
class ScheduleStore(Protocol):
    """Persistence of schedules (`jobs_core.Schedule`), beside a store's jobs.

    The core decides what a schedule is and which slots are due; the store keeps the
    rows and makes firing exactly-once: `fire_schedule` moves `next_fire_at` forward by
    compare-and-set and inserts the slot jobs in the same transaction, so of several
    processes firing the same slot one wins and the others change nothing.
    """

    async def save_schedule(self, schedule: Schedule) -> Schedule:
        """Create the schedule, or update the stored one of that name (one atomic
        statement), and return it as stored. An update writes the definition and
        `updated`; it keeps `created`, `paused`, `last_fired_at`, `last_job_id`, and
        `next_fire_at` too unless the timing changed (`jobs_core.timing_key` differs),
        when `next_fire_at` becomes the given one."""
        ...

    async def get_schedule(self, name: str) -> Schedule:
        """The schedule of that name; `ScheduleNotFound` if none."""
        ...

    async def list_schedules(self) -> Sequence[Schedule]:
        """Every schedule, by name."""
        ...

    async def delete_schedule(self, name: str) -> bool:
        """Delete the schedule (its jobs stay); False if there was none."""
        ...

    async def set_schedule_paused(
        self, name: str, paused: bool, *, now: datetime, next_fire_at: datetime | None = None
    ) -> Schedule:
        """Store the pause flag (and `updated = now`; `next_fire_at` too when given: a
        resumed schedule starts from the next slot); the schedule as stored, or
        `ScheduleNotFound`."""
        ...

    async def due_schedules(self, *, now: datetime, limit: int) -> Sequence[Schedule]:
        """Up to `limit` unpaused schedules with `next_fire_at <= now`, earliest first:
        the firer's one query per tick (cheap when there is no schedule at all)."""
        ...

    async def fire_schedule(
        self,
        name: str,
        *,
        expected_next_fire_at: datetime,
        next_fire_at: datetime,
        jobs: Sequence[Job],
    ) -> bool:
        """In one transaction: if the schedule is unpaused and its `next_fire_at` is
        still `expected_next_fire_at`, set it to `next_fire_at`, insert `jobs` (new
        `pending` jobs, one per slot, in slot order) and, if there are any, set
        `last_fired_at` to the last one's `run_at` and `last_job_id` to its id; True.
        Otherwise (another process fired it first, it was paused, changed or deleted)
        write nothing and return False. Wakes watchers when jobs were inserted."""
        ...
