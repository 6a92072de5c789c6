"""The job lifecycle: one table of legal moves, and pure functions that make them.

No I/O and no clock reads: `now` is an argument. Stores persist what these functions
return (guarded by the status and lock token the function saw); the service and the
worker only orchestrate them. The table is the whole state machine:
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

import attrs

from jobs_core._config import Backoff
from jobs_core._errors import CannotDelete, CannotRequeue, IllegalTransition, LockLost
from jobs_core._model import Job, JobStatus, JobUpdate, JSONValue

PENDING, PROCESSING, COMPLETED, FAILED = (
    JobStatus.PENDING,
    JobStatus.PROCESSING,
    JobStatus.COMPLETED,
    JobStatus.FAILED,
)

#: Marks "the row is gone" as the target of `delete`.
DELETED: Final = "deleted"

#: status -> event -> next status. An event missing from a status's row is illegal there.
TRANSITIONS: Final[dict[JobStatus, dict[str, JobStatus | str]]] = {
    PENDING: {"claim": PROCESSING, "delete": DELETED},
    PROCESSING: {
        "complete": COMPLETED,
        "retry": PENDING,  # failed attempt (or expired lease) with retries left
        "give_up": FAILED,  # failed attempt (or expired lease) on the last allowed run
        "release": PENDING,  # worker stopping: hand the job back, attempt not counted
    },
    COMPLETED: {},
    FAILED: {"requeue": PENDING, "delete": DELETED},
}

#: The order a claim takes due jobs in: `Job` field names, each ascending. Stores
#: compile it into their claim's ORDER BY and index; `claim_order_key` sorts by it.
CLAIM_ORDER: Final = ("run_at", "id")

#: Events a client may ask for (the API's and the UI's actions on one job).
CLIENT_EVENTS: Final = ("requeue", "delete")


def _statuses_with(event: str) -> frozenset[JobStatus]:
    return frozenset(status for status, row in TRANSITIONS.items() if event in row)


#: Statuses no event leaves on its own: the job stays until deleted or requeued.
FINAL_STATUSES: Final = frozenset(
    status for status, row in TRANSITIONS.items() if not set(row) - set(CLIENT_EVENTS)
)
#: Statuses a claim may take a (due) job from.
CLAIMABLE_STATUSES: Final = _statuses_with("claim")
#: Statuses a job may be deleted in.
DELETABLE_STATUSES: Final = _statuses_with("delete")
#: Statuses a job may be requeued from.
REQUEUEABLE_STATUSES: Final = _statuses_with("requeue")


def claim_order_key(job: Job) -> tuple[object, ...]:
    """The sort key of `CLAIM_ORDER` for `job`."""
    return tuple(getattr(job, name) for name in CLAIM_ORDER)


def actions(status: JobStatus) -> tuple[str, ...]:
    """The client events legal for a job in `status`, in `CLIENT_EVENTS` order."""
    return tuple(event for event in CLIENT_EVENTS if event in TRANSITIONS[status])


#: `last_error` recorded when a lease runs out before its worker reported.
LOCK_EXPIRED = "lock expired"
#: Longest `last_error` kept; longer messages are cut, with a marker.
MAX_ERROR_LENGTH = 8192

_ERRORS = {"requeue": CannotRequeue, "delete": CannotDelete}


def allowed(status: JobStatus, event: str) -> bool:
    """Whether `event` is legal for a job in `status`."""
    return event in TRANSITIONS[status]


def _step(job: Job, event: str) -> JobStatus:
    target = TRANSITIONS[job.status].get(event)
    if target is None or target == DELETED:
        if target == DELETED:
            raise AssertionError("delete has no next status; use check_delete")
        sources = sorted(s.value for s, row in TRANSITIONS.items() if event in row)
        error = _ERRORS.get(event, IllegalTransition)
        raise error(job.id, event, job.status.value, " or ".join(sources) or "no")
    assert isinstance(target, JobStatus)
    return target


def new_job(
    *,
    job_id: str,
    topic: str,
    payload: JSONValue,
    run_at: datetime,
    max_retries: int,
    now: datetime,
) -> Job:
    """A fresh `pending` job (inputs already validated by the service)."""
    return Job(
        id=job_id,
        topic=topic,
        payload=payload,
        status=PENDING,
        run_at=run_at,
        max_retries=max_retries,
        created=now,
        updated=now,
    )


def claim(job: Job, *, now: datetime, lease: timedelta, token: str) -> Job:
    """`pending` and due -> `processing`, leased until `now + lease` under a new token."""
    status = _step(job, "claim")
    if job.run_at > now:
        raise IllegalTransition(job.id, "claim", f"due only at {job.run_at.isoformat()}", "due")
    return attrs.evolve(job, status=status, locked_until=now + lease, lock_token=token, updated=now)


def _check_lease(job: Job, token: str, now: datetime, event: str) -> None:
    if job.status is not PROCESSING:
        raise LockLost(job.id, f"cannot {event}: the job is {job.status.value}")
    if job.lock_token != token:
        raise LockLost(job.id, f"cannot {event}: another claim holds the job now")
    assert job.locked_until is not None
    if job.locked_until < now:
        raise LockLost(job.id, f"cannot {event}: the lease expired at {job.locked_until}")


def complete(job: Job, *, token: str, now: datetime) -> Job:
    """`processing` under `token`, lease still valid -> `completed`."""
    _check_lease(job, token, now, "complete")
    return _unlocked(
        job,
        status=_step(job, "complete"),
        run_at=job.run_at,
        retries=job.retries,
        last_error=job.last_error,
        now=now,
    )


def fail(job: Job, *, token: str, error: str, now: datetime, backoff: Backoff) -> Job:
    """A failed attempt: back to `pending` after a backoff while retries remain, else `failed`."""
    _check_lease(job, token, now, "fail")
    return _failed_attempt(job, error, now, backoff)


def expire(job: Job, *, now: datetime, backoff: Backoff) -> Job:
    """A lease that ran out counts as a failed attempt with the error "lock expired"."""
    if job.status is not PROCESSING or job.locked_until is None or job.locked_until >= now:
        raise IllegalTransition(job.id, "expire", job.status.value, "lease-expired processing")
    return _failed_attempt(job, LOCK_EXPIRED, now, backoff)


def _failed_attempt(job: Job, error: str, now: datetime, backoff: Backoff) -> Job:
    error = error if len(error) <= MAX_ERROR_LENGTH else error[:MAX_ERROR_LENGTH] + "…[truncated]"
    if job.retries < job.max_retries:
        return _unlocked(
            job,
            status=_step(job, "retry"),
            run_at=now + backoff(job.retries),
            retries=job.retries + 1,
            last_error=error,
            now=now,
        )
    return _unlocked(
        job,
        status=_step(job, "give_up"),
        run_at=job.run_at,
        retries=job.retries,
        last_error=error,
        now=now,
    )


def release(job: Job, *, token: str, now: datetime) -> Job:
    """Hand a claimed job back unrun (graceful stop): `pending`, due now, attempt not counted."""
    _check_lease(job, token, now, "release")
    return _unlocked(
        job,
        status=_step(job, "release"),
        run_at=now,
        retries=job.retries,
        last_error=job.last_error,
        now=now,
    )


def requeue(job: Job, *, now: datetime) -> Job:
    """`failed` -> `pending`, due now, with retries, lock and last error cleared."""
    return _unlocked(
        job, status=_step(job, "requeue"), run_at=now, retries=0, last_error=None, now=now
    )


def _unlocked(
    job: Job,
    *,
    status: JobStatus,
    run_at: datetime,
    retries: int,
    last_error: str | None,
    now: datetime,
) -> Job:
    """`job` moved to `status` with its lease cleared, as every move but `claim` leaves it.

    Built field by field: `attrs.evolve` costs half as much again, on the worker's path
    for every job. A test checks that this copies every field outside `MUTABLE_FIELDS`,
    so a field added to `Job` cannot be silently dropped here.
    """
    return Job(
        id=job.id,
        topic=job.topic,
        payload=job.payload,
        status=status,
        run_at=run_at,
        locked_until=None,
        lock_token=None,
        retries=retries,
        max_retries=job.max_retries,
        last_error=last_error,
        created=job.created,
        updated=now,
    )


def check_delete(job: Job) -> None:
    """Raise `CannotDelete` unless the job may be deleted (`pending` or `failed`)."""
    if not allowed(job.status, "delete"):
        sources = sorted(s.value for s, row in TRANSITIONS.items() if "delete" in row)
        raise CannotDelete(job.id, "delete", job.status.value, " or ".join(sources))


def update(before: Job, after: Job) -> JobUpdate:
    """The guarded write that turns `before` into `after` in a store."""
    return JobUpdate(
        job=after, expected_status=before.status, expected_lock_token=before.lock_token
    )
