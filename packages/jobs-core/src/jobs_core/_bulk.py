"""Bulk actions: requeue, delete or cancel many jobs at once, each through its own guard.

A hundred failed jobs should take one command, not a hundred dialogs, without a second
set of rules: every selected job goes through the same `Jobs.requeue` / `delete` /
`cancel` as a single one (its transition, its compare-and-set), and a job for which
the action is not legal (any more) is skipped, not an error. The selection is read in
full (up to `max_jobs`) before anything changes, so acting on a job cannot shift the
pages still to read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import attrs

from jobs_core._errors import IllegalTransition, InvalidOptions, JobBusy, JobNotFound
from jobs_core._model import JobStatus
from jobs_core._validation import MAX_PAGE_SIZE, check_status, check_time, check_topic

if TYPE_CHECKING:
    from jobs_core._service import Jobs

__all__ = ["BULK_MAX", "BulkResult", "BulkSelection"]

#: Most jobs one bulk action selects unless it says otherwise (`max_jobs`).
BULK_MAX: Final = 10_000
#: The highest `max_jobs` accepted: a bulk action is one request's work.
BULK_MAX_LIMIT: Final = 100_000


@attrs.frozen(kw_only=True)
class BulkSelection:
    """Which jobs a bulk action takes: the jobs `ids` (those that exist), or those
    matching every filter given (`topic`, `status`, `before`: last changed before that
    instant), newest first, at most `max_jobs`. One of `ids` or a filter is needed: an
    action on every job must say so with a filter."""

    ids: tuple[str, ...] | None = None
    topic: str | None = None
    status: JobStatus | None = None
    before: datetime | None = None
    max_jobs: int = BULK_MAX

    @classmethod
    def of(
        cls,
        *,
        ids: Iterable[str] | None = None,
        topic: str | None = None,
        status: JobStatus | str | None = None,
        before: datetime | None = None,
        max_jobs: int = BULK_MAX,
    ) -> BulkSelection:
        """A checked selection; `InvalidOptions` (or `InvalidTopic`) says what is wrong."""
        if isinstance(max_jobs, bool) or not isinstance(max_jobs, int):
            raise InvalidOptions(f"max_jobs must be an integer, got {max_jobs!r}")
        if not 1 <= max_jobs <= BULK_MAX_LIMIT:
            raise InvalidOptions(f"max_jobs must be from 1 to {BULK_MAX_LIMIT}, got {max_jobs}")
        filtered = topic is not None or status is not None or before is not None
        if ids is None:
            if not filtered:
                raise InvalidOptions("a bulk action needs ids or a filter (topic, status, before)")
            return cls(
                topic=None if topic is None else check_topic(topic),
                status=check_status(status),
                before=None if before is None else check_time(before, "before"),
                max_jobs=max_jobs,
            )
        if filtered:
            raise InvalidOptions("a bulk action takes ids or a filter, not both")
        if isinstance(ids, str | bytes):
            raise InvalidOptions("ids must be a list of job ids, not one string")
        chosen = tuple(dict.fromkeys(ids))
        if not all(isinstance(job_id, str) for job_id in chosen):
            raise InvalidOptions("ids must be strings")
        if len(chosen) > max_jobs:
            raise InvalidOptions(f"{len(chosen)} ids given, more than max_jobs ({max_jobs})")
        return cls(ids=chosen, max_jobs=max_jobs)


@attrs.frozen
class BulkResult:
    """What a bulk action did: `matched` jobs selected, `changed` by the action,
    `skipped` because it was not legal for them (or they changed or vanished meanwhile).
    `matched == changed + skipped`; a dry run changes and skips nothing."""

    matched: int
    changed: int
    skipped: int


#: What makes a bulk action skip a job rather than fail: the single action refused it.
_SKIPPED: Final = (IllegalTransition, JobNotFound, JobBusy)


async def run_bulk(
    jobs: Jobs,
    action: Callable[[str], Awaitable[Any]],
    selection: BulkSelection,
    *,
    dry_run: bool,
) -> BulkResult:
    """Select, then apply `action` (one of `jobs`' single-job commands) to each job."""
    chosen = await _select(jobs, selection)
    if dry_run:
        return BulkResult(len(chosen), 0, 0)
    changed = 0
    for job_id in chosen:
        try:
            await action(job_id)
        except _SKIPPED:
            continue
        changed += 1
    return BulkResult(len(chosen), changed, len(chosen) - changed)


async def _select(jobs: Jobs, selection: BulkSelection) -> list[str]:
    if selection.ids is not None:
        found = []
        for job_id in selection.ids:
            try:
                found.append((await jobs.get(job_id)).id)
            except JobNotFound:
                continue
        return found
    chosen: list[str] = []
    offset = 0
    while len(chosen) < selection.max_jobs:
        page = await jobs.list(
            topic=selection.topic,
            status=selection.status,
            limit=MAX_PAGE_SIZE,
            offset=offset,
            payloads=False,
        )
        for job in page.items:
            if selection.before is None or job.updated < selection.before:
                chosen.append(job.id)
                if len(chosen) == selection.max_jobs:
                    break
        offset += len(page.items)
        if not page.items or offset >= page.total:
            break
    return chosen
