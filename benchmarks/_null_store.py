"""A store that does no I/O, to measure the core's own cost per job (the ceiling any
real store's W2 figure stays under)."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta

import attrs

from jobs_core import Job, JobPage, JobQuery, JobStatus, JobUpdate, TopicInfo


class NullStore:
    """Pending jobs in a deque; claims pop from it, guarded writes always succeed."""

    def __init__(self) -> None:
        self._pending: deque[Job] = deque()
        self.completed = 0

    async def insert(self, jobs: Sequence[Job]) -> Sequence[Job]:
        self._pending.extend(jobs)  # unique keys are not honoured: benchmarks use none
        return jobs

    async def get(self, job_id: str) -> Job:
        raise NotImplementedError

    async def list(self, query: JobQuery) -> JobPage:
        raise NotImplementedError

    async def count_by_status(self) -> Mapping[JobStatus, int]:
        return {JobStatus.PENDING: len(self._pending), JobStatus.COMPLETED: self.completed}

    async def claim(
        self,
        *,
        topics: Collection[str],
        now: datetime,
        lease: timedelta,
        limit: int,
        caps: Mapping[str, int] | None = None,
    ) -> Sequence[Job]:
        claimed: list[Job] = []
        while self._pending and len(claimed) < limit:
            job = self._pending.popleft()
            claimed.append(
                attrs.evolve(
                    job,
                    status=JobStatus.PROCESSING,
                    locked_until=now + lease,
                    lock_token=uuid.uuid4().hex,
                    updated=now,
                )
            )
        await asyncio.sleep(0)  # a real store yields while it waits for the database
        return claimed

    async def set_paused(self, topic: str, paused: bool) -> None:
        raise NotImplementedError

    async def set_max_running(self, topic: str, max_running: int | None) -> None:
        raise NotImplementedError

    async def topics(self) -> Sequence[TopicInfo]:
        raise NotImplementedError

    async def expired(self, *, now: datetime, limit: int) -> Sequence[Job]:
        return []

    async def update(self, updates: Sequence[JobUpdate]) -> Sequence[bool]:
        await asyncio.sleep(0)
        self.completed += sum(1 for u in updates if u.job.status is JobStatus.COMPLETED)
        return [True] * len(updates)

    async def renew(self, renewals: Sequence[JobUpdate]) -> Sequence[Job | None]:
        raise NotImplementedError

    async def delete(self, job_id: str, *, expected_status: JobStatus) -> bool:
        raise NotImplementedError

    async def delete_finished(
        self, *, statuses: Collection[JobStatus], before: datetime, limit: int
    ) -> int:
        raise NotImplementedError

    async def watch(self, on_new_work: Callable[[], None]) -> None:
        await asyncio.Event().wait()

    async def close(self) -> None:
        return None
