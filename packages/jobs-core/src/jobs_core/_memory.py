"""`MemoryStore`: the complete reference store, used for tests, embedding, and as the model."""

from __future__ import annotations

import asyncio
import operator
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta

import attrs

from jobs_core import _transitions as transitions
from jobs_core._errors import InvalidOptions, JobNotFound, ScheduleNotFound, UniqueKeyTaken
from jobs_core._history import errors_to_json
from jobs_core._ids import new_lock_token
from jobs_core._model import (
    MUTABLE_FIELDS,
    UNREAD_BULKY,
    Job,
    JobPage,
    JobQuery,
    JobStatus,
    JobUpdate,
    JSONValue,
    rows_within_budget,
)
from jobs_core._payload import serialize
from jobs_core._schedules import Schedule, timing_key
from jobs_core._topics import (
    TopicInfo,
    TopicPolicy,
    check_max_running,
    claim_allowances,
    pick_within_allowances,
    topic_infos,
)
from jobs_core._validation import check_delete_finished

_expired_order = operator.attrgetter(*transitions.EXPIRED_ORDER)

#: Large enough for any payload: `serialize` only measures here, the service checked it.
_NO_LIMIT = 2**62


def _json_size(value: JSONValue) -> int:
    """Bytes of a value's compact JSON text, as a store that keeps text would hold."""
    return len(serialize(value, _NO_LIMIT).encode("utf-8"))


def _bulky_size(job: Job) -> int:
    """Bytes of the job's bulky fields as stored JSON text (a NULL result is none)."""
    history = _json_size(errors_to_json(job.errors)) if job.errors else 2
    return _json_size(job.payload) + history + (0 if job.result is None else _json_size(job.result))


class MemoryStore:
    """Keeps jobs in a dict of immutable `Job` values, in this process only.

    Every method completes without yielding to the event loop between its read and its
    write, so each is atomic with respect to other coroutines.
    """

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._watchers: set[Callable[[], None]] = set()
        self._policies: dict[str, TopicPolicy] = {}
        #: (topic, unique_key) -> the id of the last job that took the key; it holds the
        #: key while it exists and is active (checked on every read, so no other write
        #: needs to keep this up to date).
        self._keys: dict[tuple[str, str], str] = {}
        self._schedules: dict[str, Schedule] = {}

    @classmethod
    def from_url(cls, url: str, *, create_schema: bool = True) -> MemoryStore:
        """Build from `memory://` (the entry point of the `jobs_core.stores` group).

        `create_schema` is accepted like every adapter's and ignored: there is no schema."""
        if url.rstrip("/") != "memory:":
            raise InvalidOptions(f"a memory store URL is just 'memory://', got {url!r}")
        return cls()

    def __repr__(self) -> str:
        return f"MemoryStore(<{len(self._jobs)} jobs>)"

    async def insert(self, jobs: Sequence[Job]) -> Sequence[Job]:
        """Add new jobs; an id already present is a programming error. A job whose
        (topic, unique key) an active job holds (stored before, or earlier in the batch)
        is not added: its place in the answer is the holder."""
        duplicate = [job.id for job in jobs if job.id in self._jobs]
        if duplicate:
            raise ValueError(f"job ids already stored: {duplicate}")
        if all(job.unique_key is None for job in jobs):
            self._jobs.update((job.id, job) for job in jobs)
            if jobs:
                self._notify()
            return jobs
        answer: list[Job] = []
        for job in jobs:
            holder = None if job.unique_key is None else self._holder(job.topic, job.unique_key)
            if holder is not None:
                answer.append(holder)
                continue
            self._jobs[job.id] = job
            if job.unique_key is not None:
                self._keys[job.topic, job.unique_key] = job.id
            answer.append(job)
        if jobs:
            self._notify()
        return answer

    def _holder(self, topic: str, key: str) -> Job | None:
        """The active job of `topic` holding `key`, if any."""
        held = self._jobs.get(self._keys.get((topic, key), ""))
        if held is None or held.status not in transitions.ACTIVE_STATUSES:
            return None
        return held

    async def get(self, job_id: str) -> Job:
        """The job, or `JobNotFound`."""
        try:
            return self._jobs[job_id]
        except KeyError:
            raise JobNotFound(job_id) from None

    async def list(self, query: JobQuery) -> JobPage:
        """Filter, order newest first, page."""
        matches = [
            job
            for job in self._jobs.values()
            if (query.topic is None or job.topic == query.topic)
            and (query.status is None or job.status == query.status)
        ]
        matches.sort(key=lambda job: (job.created, job.id), reverse=True)
        page = matches[query.offset : query.offset + query.limit]
        fitting = len(page)
        if query.payloads and query.max_payload_bytes is not None:
            fitting = rows_within_budget(
                (_bulky_size(job) for job in page), query.max_payload_bytes
            )
        if not query.payloads:
            page = [attrs.evolve(job, **UNREAD_BULKY) for job in page]
        return JobPage(
            items=page[:fitting],
            total=len(matches),
            limit=query.limit,
            offset=query.offset,
            payloads=query.payloads,
            truncated=fitting < len(page),
        )

    async def count_by_status(self) -> Mapping[JobStatus, int]:
        """Counts per status."""
        counts = dict.fromkeys(JobStatus, 0)
        for job in self._jobs.values():
            counts[job.status] += 1
        return counts

    async def claim(
        self,
        *,
        topics: Collection[str],
        now: datetime,
        lease: timedelta,
        limit: int,
        caps: Mapping[str, int] | None = None,
    ) -> Sequence[Job]:
        """Lease the first `limit` claimable due jobs of `topics` in `CLAIM_ORDER`, each
        topic within its allowance (paused, `max_running`, `caps`)."""
        limit = max(limit, 0)
        running: dict[str, int] = {}
        for job in self._jobs.values():
            if job.status is JobStatus.PROCESSING:
                running[job.topic] = running.get(job.topic, 0) + 1
        allowances = claim_allowances(
            topics, limit=limit, policies=self._policies, running=running, caps=caps
        )
        due = sorted(
            (
                job
                for job in self._jobs.values()
                if transitions.claimable(job, now) and job.topic in allowances
            ),
            key=transitions.claim_order_key,
        )
        picked = pick_within_allowances(due, limit=limit, allowances=allowances)
        claimed = [
            transitions.claim(job, now=now, lease=lease, token=new_lock_token()) for job in picked
        ]
        self._jobs.update((job.id, job) for job in claimed)
        return claimed

    async def set_paused(self, topic: str, paused: bool) -> None:
        """Store the topic's pause flag (a default policy is dropped)."""
        policy = self._policies.get(topic, TopicPolicy(topic=topic))
        self._set_policy(attrs.evolve(policy, paused=bool(paused)))

    async def set_max_running(self, topic: str, max_running: int | None) -> None:
        """Store the topic's global limit (a default policy is dropped)."""
        policy = self._policies.get(topic, TopicPolicy(topic=topic))
        self._set_policy(attrs.evolve(policy, max_running=check_max_running(max_running)))

    def _set_policy(self, policy: TopicPolicy) -> None:
        if policy.is_default:
            self._policies.pop(policy.topic, None)
        else:
            self._policies[policy.topic] = policy
        self._notify()  # a resumed topic's jobs may be claimable now

    async def topics(self) -> Sequence[TopicInfo]:
        """Counts per topic and status, with each topic's policy, by topic name."""
        counted = Counter((job.topic, job.status) for job in self._jobs.values())
        earliest: dict[tuple[str, JobStatus], datetime] = {}
        for job in self._jobs.values():
            key = (job.topic, job.status)
            if key not in earliest or job.run_at < earliest[key]:
                earliest[key] = job.run_at
        return topic_infos(
            ((topic, status, n, earliest[topic, status]) for (topic, status), n in counted.items()),
            self._policies.values(),
        )

    async def expired(self, *, now: datetime, limit: int) -> Sequence[Job]:
        """Leased jobs whose lease ran out, in `EXPIRED_ORDER` (oldest lease end first)."""
        stale = (job for job in self._jobs.values() if transitions.lease_expired(job, now))
        return sorted(stale, key=_expired_order)[: max(limit, 0)]

    async def update(self, updates: Sequence[JobUpdate]) -> Sequence[bool]:
        """Compare-and-set each job's mutable fields."""
        undo: list[Job] = []  # all or nothing: a key conflict undoes the batch
        applied = []
        for change in updates:
            current = self._jobs.get(change.job.id)
            ok = current is not None and transitions.write_allowed(current, change)
            if ok:
                assert current is not None
                fields = {name: getattr(change.job, name) for name in MUTABLE_FIELDS}
                self._jobs[current.id] = after = attrs.evolve(current, **fields)
                undo.append(current)
                if not self._take_key(current, after):
                    for job in reversed(undo):
                        self._jobs[job.id] = job
                    assert current.unique_key is not None
                    holder = self._holder(current.topic, current.unique_key)
                    raise UniqueKeyTaken(
                        current.id,
                        current.topic,
                        current.unique_key,
                        None if holder is None else holder.id,
                    )
            applied.append(ok)
        if any(
            ok and change.job.status in transitions.CLAIMABLE_STATUSES
            for ok, change in zip(applied, updates, strict=True)
        ):
            self._notify()
        return applied

    def _take_key(self, before: Job, after: Job) -> bool:
        """Record that `after` (a job made active from a final status) holds its key;
        False if another active job holds it."""
        key = after.unique_key
        if (
            key is None
            or before.status in transitions.ACTIVE_STATUSES
            or after.status not in transitions.ACTIVE_STATUSES
        ):
            return True
        holder = self._holder(after.topic, key)
        if holder is not None and holder.id != after.id:
            return False
        self._keys[after.topic, key] = after.id
        return True

    async def renew(self, renewals: Sequence[JobUpdate]) -> Sequence[Job | None]:
        """Write each renewal's lease fields if its guard holds; the stored job or None."""
        renewed: list[Job | None] = []
        for change in renewals:
            current = self._jobs.get(change.job.id)
            if (
                current is None
                or current.status != change.expected_status
                or current.lock_token not in (change.expected_lock_token, change.job.lock_token)
            ):
                renewed.append(None)
                continue
            lease = {name: getattr(change.job, name) for name in transitions.RENEW_FIELDS}
            self._jobs[current.id] = stored = attrs.evolve(current, **lease)
            renewed.append(stored)
        return renewed

    async def delete(self, job_id: str, *, expected_status: JobStatus) -> bool:
        """Remove the job if it is still in `expected_status`."""
        current = self._jobs.get(job_id)
        if current is None or current.status != expected_status:
            return False
        del self._jobs[job_id]
        return True

    async def delete_finished(
        self, *, statuses: Collection[JobStatus], before: datetime, limit: int
    ) -> int:
        """Remove the `limit` oldest (`updated`, then `id`) final jobs updated before `before`."""
        wanted, before, limit = check_delete_finished(statuses, before, limit)
        old = sorted(
            (job for job in self._jobs.values() if job.status in wanted and job.updated < before),
            key=lambda job: (job.updated, job.id),
        )[:limit]
        for job in old:
            del self._jobs[job.id]
        return len(old)

    # -- schedules (`ScheduleStore`) -----------------------------------------------

    async def save_schedule(self, schedule: Schedule) -> Schedule:
        """Create or update; an update keeps the state, and the next slot unless the
        timing changed."""
        stored = self._schedules.get(schedule.name)
        if stored is not None:
            schedule = attrs.evolve(
                schedule,
                created=stored.created,
                paused=stored.paused,
                last_fired_at=stored.last_fired_at,
                last_job_id=stored.last_job_id,
                next_fire_at=(
                    stored.next_fire_at
                    if timing_key(stored) == timing_key(schedule)
                    else schedule.next_fire_at
                ),
            )
        self._schedules[schedule.name] = schedule
        return schedule

    async def get_schedule(self, name: str) -> Schedule:
        """The schedule, or `ScheduleNotFound`."""
        try:
            return self._schedules[name]
        except KeyError:
            raise ScheduleNotFound(name) from None

    async def list_schedules(self) -> Sequence[Schedule]:
        """Every schedule, by name."""
        return [self._schedules[name] for name in sorted(self._schedules)]

    async def delete_schedule(self, name: str) -> bool:
        """Remove the schedule if there is one."""
        return self._schedules.pop(name, None) is not None

    async def set_schedule_paused(
        self, name: str, paused: bool, *, now: datetime, next_fire_at: datetime | None = None
    ) -> Schedule:
        """Store the pause flag (and the next slot, when given)."""
        stored = await self.get_schedule(name)
        self._schedules[name] = stored = attrs.evolve(
            stored,
            paused=bool(paused),
            updated=now,
            next_fire_at=stored.next_fire_at if next_fire_at is None else next_fire_at,
        )
        return stored

    async def due_schedules(self, *, now: datetime, limit: int) -> Sequence[Schedule]:
        """Unpaused schedules whose next slot came, earliest first."""
        due = [s for s in self._schedules.values() if not s.paused and s.next_fire_at <= now]
        due.sort(key=lambda s: (s.next_fire_at, s.name))
        return due[: max(limit, 0)]

    async def fire_schedule(
        self,
        name: str,
        *,
        expected_next_fire_at: datetime,
        next_fire_at: datetime,
        jobs: Sequence[Job],
    ) -> bool:
        """Compare-and-set the next slot and insert the slot jobs, or do nothing."""
        stored = self._schedules.get(name)
        if stored is None or stored.paused or stored.next_fire_at != expected_next_fire_at:
            return False
        fired = attrs.evolve(stored, next_fire_at=next_fire_at)
        if jobs:
            await self.insert(jobs)  # no await point before it: still atomic
            fired = attrs.evolve(fired, last_fired_at=jobs[-1].run_at, last_job_id=jobs[-1].id)
        self._schedules[name] = fired
        return True

    async def watch(self, on_new_work: Callable[[], None]) -> None:
        """Report inserts and re-queues made through this store, until cancelled."""
        self._watchers.add(on_new_work)
        try:
            await asyncio.Event().wait()
        finally:
            self._watchers.discard(on_new_work)

    async def close(self) -> None:
        """Nothing to release."""

    def _notify(self) -> None:
        for watcher in list(self._watchers):
            watcher()
