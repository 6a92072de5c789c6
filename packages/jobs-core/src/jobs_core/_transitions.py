"""The job lifecycle as data: one table of legal moves, each a target and its effects.

No I/O and no clock reads: `now` is an argument. Stores persist what these functions
return (guarded by the status and lock token the function saw); the service and the
worker only orchestrate them. `TRANSITIONS` is the whole state machine: status -> event
-> `Move`. A move names its target status and, per mutable field, an effect from that
field's rule in `FIELD_RULES`; every other field is copied. The status sets, the claim
and rescue orders and the client actions below are read off the table, and the stores,
the memory store, the contract kit, the API and docs/lifecycle.md read them from here.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final, Protocol

import attrs

from jobs_core._config import Backoff
from jobs_core._errors import (
    CannotCancel,
    CannotDelete,
    CannotRequeue,
    IllegalTransition,
    LockLost,
)
from jobs_core._fields import FieldKind
from jobs_core._history import AttemptError, recorded
from jobs_core._model import (
    JOB_FIELDS,
    JOB_SCHEMA,
    MUTABLE_FIELDS,
    Job,
    JobStatus,
    JobUpdate,
    JSONValue,
)

PENDING, PROCESSING, COMPLETED, FAILED, CANCELLED = (
    JobStatus.PENDING,
    JobStatus.PROCESSING,
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
)


class JobEvent(enum.StrEnum):
    """What can happen to a job; `"claim"` and `JobEvent.CLAIM` compare equal."""

    #: A worker leases a due job.
    CLAIM = "claim"
    #: The lease holder extends its lease (and takes a new lock token).
    RENEW = "renew"
    #: The handler returned.
    COMPLETE = "complete"
    #: A failed attempt (or an expired lease) with retries left.
    RETRY = "retry"
    #: A failed attempt (or an expired lease) on the last allowed run.
    GIVE_UP = "give_up"
    #: A stopping worker hands the job back; the attempt is not counted.
    RELEASE = "release"
    #: The handler asked to run again later (`Snooze`); the attempt is not counted.
    SNOOZE = "snooze"
    #: The worker stopped a handler at a cancel request (or the lease of a job asked to
    #: cancel ran out): the job ends cancelled, never retried.
    ABORT = "abort"
    #: A client asks for a failed or cancelled job to run again.
    REQUEUE = "requeue"
    #: A client removes the job.
    DELETE = "delete"
    #: A client cancels the job: at once if it waits, by a request to its worker if it runs.
    CANCEL = "cancel"


CLAIM, RENEW, COMPLETE, RETRY, GIVE_UP, RELEASE, SNOOZE, ABORT, REQUEUE, DELETE, CANCEL = JobEvent


@attrs.frozen
class FieldRule:
    """How moves may change one mutable field: effect name -> the expression of the new
    value. Expressions see `job` (before the move), `now`, `token` (the new lock token),
    `lease` (its duration), `backoff`, `error`, `trace` (its traceback), `result` (the
    handler's return value), `target` (the move's status) and `append_attempt` (the attempt
    history with this attempt appended). The effect `"keep"` (copy the value) is always
    there; `default` is the effect of a move that does not name the field."""

    effects: Mapping[str, str]
    default: str = "keep"


#: One rule per mutable `Job` field (checked at import). A new mutable field adds its
#: row here, and the moves that change it name one of its effects.
FIELD_RULES: Final[Mapping[str, FieldRule]] = {
    "status": FieldRule({"target": "target"}, default="target"),
    "run_at": FieldRule({"now": "now", "backoff": "now + backoff(job.retries)"}),
    "locked_until": FieldRule({"lease": "now + lease", "clear": "None"}),
    "lock_token": FieldRule({"new": "token", "clear": "None"}),
    "retries": FieldRule({"count": "job.retries + 1", "reset": "0"}),
    "snoozes": FieldRule({"count": "job.snoozes + 1", "reset": "0"}),
    "last_error": FieldRule({"record": "error", "clear": "None"}),
    "errors": FieldRule({"record": "append_attempt(job, now, error, trace)"}),
    "result": FieldRule({"store": "result"}),
    "cancel_requested": FieldRule({"now": "job.cancel_requested or now", "clear": "None"}),
    "updated": FieldRule({"now": "now"}, default="now"),
}

#: The effects of taking a lease (claim, renew) and of ending one (every other move out
#: of a leased status).
LEASE: Final = {"locked_until": "lease", "lock_token": "new"}
UNLOCK: Final = {"locked_until": "clear", "lock_token": "clear"}


@attrs.frozen
class Move:
    """One legal move: the status it leads to (`None`: the row is deleted) and the
    effect it has on each mutable field it names."""

    target: JobStatus | None
    effects: tuple[tuple[str, str], ...] = ()

    def effect(self, field: str) -> str:
        """The effect this move has on `field` (its rule's default if not named)."""
        return dict(self.effects).get(field, FIELD_RULES[field].default)

    @property
    def takes_lease(self) -> bool:
        """Whether the job holds a (new) lease after this move."""
        return self.effect("lock_token") == "new"


def move(target: JobStatus | None, *groups: Mapping[str, str], **effects: str) -> Move:
    """A `Move` to `target` with the effects of `groups` and then `effects`."""
    merged: dict[str, str] = {}
    for group in (*groups, effects):
        merged.update(group)
    return Move(target, tuple(merged.items()))


#: What a failed attempt records: its error, and the attempt in the history.
_FAILURE: Final = {"last_error": "record", "errors": "record"}

#: What a requeue does: due now, a fresh count of retries, no error, no cancel request
#: (the attempt history stays).
_AGAIN: Final = {
    "run_at": "now",
    "retries": "reset",
    "snoozes": "reset",
    "last_error": "clear",
    "cancel_requested": "clear",
}

#: The row is gone (the target of `delete`).
GONE: Final = move(None)

#: status -> event -> move. An event missing from a status's row is illegal there.
TRANSITIONS: Final[Mapping[JobStatus, Mapping[JobEvent, Move]]] = {
    PENDING: {CLAIM: move(PROCESSING, LEASE), DELETE: GONE, CANCEL: move(CANCELLED)},
    PROCESSING: {
        RENEW: move(PROCESSING, LEASE),
        COMPLETE: move(COMPLETED, UNLOCK, result="store"),
        RETRY: move(PENDING, UNLOCK, _FAILURE, run_at="backoff", retries="count"),
        GIVE_UP: move(FAILED, UNLOCK, _FAILURE),
        RELEASE: move(PENDING, UNLOCK, run_at="now"),
        SNOOZE: move(PENDING, UNLOCK, run_at="backoff", snoozes="count"),
        ABORT: move(CANCELLED, UNLOCK, _FAILURE),
        # A request: the lease stays with the worker, which learns of it when it renews.
        CANCEL: move(PROCESSING, cancel_requested="now"),
    },
    COMPLETED: {},
    FAILED: {REQUEUE: move(PENDING, UNLOCK, **_AGAIN), DELETE: GONE},
    CANCELLED: {REQUEUE: move(PENDING, UNLOCK, **_AGAIN), DELETE: GONE},
}

#: The order a claim takes due jobs in: `Job` field names, each ascending, or descending
#: when written with a leading `-` (an INT field's only, see `order_key`): the highest
#: priority first, then the earliest due, then by id. Stores compile it into their
#: claim's ORDER BY and index; `claim_order_key` sorts by it.
CLAIM_ORDER: Final = ("-priority", "run_at", "id")
#: The order `expired` returns leases that ran out in, oldest lease end first.
EXPIRED_ORDER: Final = ("locked_until", "id")

#: Events a client may ask for (the API's and the UI's actions on one job), in order.
CLIENT_EVENTS: Final = (REQUEUE, CANCEL, DELETE)


def _statuses_with(event: JobEvent) -> frozenset[JobStatus]:
    return frozenset(status for status, row in TRANSITIONS.items() if event in row)


#: Statuses no event leaves on its own: the job stays until deleted or requeued.
FINAL_STATUSES: Final = frozenset(
    status for status, row in TRANSITIONS.items() if not set(row) - set(CLIENT_EVENTS)
)
#: Statuses a claim may take a (due) job from.
CLAIMABLE_STATUSES: Final = _statuses_with(CLAIM)
#: Statuses in which a job holds a lease (a lock token and its end): a rescue takes the
#: expired ones back.
LEASED_STATUSES: Final = frozenset(
    m.target for row in TRANSITIONS.values() for m in row.values() if m.takes_lease and m.target
)
#: The statuses in which a job holds its unique key (`Job.unique_key`): not final.
ACTIVE_STATUSES: Final = frozenset(JobStatus) - FINAL_STATUSES
#: Statuses a job may be deleted in.
DELETABLE_STATUSES: Final = _statuses_with(DELETE)
#: Statuses a job may be requeued from.
REQUEUEABLE_STATUSES: Final = _statuses_with(REQUEUE)
#: Statuses a job may be cancelled in (at once, or by a request to its worker).
CANCELLABLE_STATUSES: Final = _statuses_with(CANCEL)

#: Fields a client sets on a leased job behind its worker's back: the cancel request. A
#: worker decides its job's next move from its own copy, which may predate the request,
#: so a guarded write from a leased status that does not carry the request is refused
#: when the row holds one (`write_allowed`); the worker then reads the row and decides
#: again (and failing that, the rescue does at the lease end). A completion is the
#: exception: the handler returned first, so it wins. Stores compile the same rule into
#: their guarded write, fed by `overrides_requests`.
REQUEST_FIELDS: Final = ("cancel_requested",)
#: Where a write from a leased status may go whatever requests the row holds.
_WINS_OVER_REQUESTS: Final = frozenset({COMPLETED})


def overrides_requests(change: JobUpdate) -> bool:
    """Whether `change` may be written over a row holding a request (`REQUEST_FIELDS`):
    it is not from a leased status, it completes the job, or it carries the request."""
    return (
        change.expected_status not in LEASED_STATUSES
        or change.job.status in _WINS_OVER_REQUESTS
        or all(getattr(change.job, name) is not None for name in REQUEST_FIELDS)
    )


def write_allowed(stored: Job, change: JobUpdate) -> bool:
    """The whole guard of `change` against the row as stored: status and lock token as
    the writer saw them, and no request dropped (`REQUEST_FIELDS`)."""
    return (
        stored.status == change.expected_status
        and stored.lock_token == change.expected_lock_token
        and (
            all(getattr(stored, name) is None for name in REQUEST_FIELDS)
            or overrides_requests(change)
        )
    )


#: The fields a renewal writes (`JobStore.renew`): those the `renew` move changes, and
#: `updated`, in `JOB_FIELDS` order. A renewal leaves every other field as stored, so it
#: cannot undo what someone else wrote to the running job meanwhile.
RENEW_FIELDS: Final = tuple(
    name
    for name in JOB_FIELDS
    if name == "updated" or name in dict(TRANSITIONS[PROCESSING][RENEW].effects)
)


#: The fields a completion writes (`JOB_FIELDS` order): those the `complete` move
#: changes, `updated`, and the `REQUEST_FIELDS` as the worker saw them (a completion wins
#: over a request, and ends it, as every store's whole-row write did). The rest of a
#: completed job is as its claim left it, so a store may write a batch of completions
#: with these columns alone, in one statement.
COMPLETE_FIELDS: Final = tuple(
    name
    for name in JOB_FIELDS
    if name in ("status", "updated", *REQUEST_FIELDS)
    or name in dict(TRANSITIONS[PROCESSING][COMPLETE].effects)
)


def _target(status: JobStatus, event: JobEvent) -> JobStatus:
    target = TRANSITIONS[status][event].target
    assert target is not None, f"{status} -{event}-> deletes the row"
    return target


#: Where a leased job goes when it cannot run again (also an unreadable leased row).
GIVEN_UP_STATUS: Final = _target(PROCESSING, GIVE_UP)


def order_key(order: Sequence[str]) -> Callable[[Job], tuple[object, ...]]:
    """The sort key of an order like `CLAIM_ORDER`: `Job` field names, a leading `-`
    sorting that field descending. A descending field must be an INT (its value is
    negated in the key; a time or a string has no negation): `TypeError` otherwise, and
    for a name that is no `Job` field or an empty order."""
    kinds = {spec.name: spec.kind for spec in JOB_SCHEMA}
    names = tuple(written.removeprefix("-") for written in order)
    negated = tuple(i for i, written in enumerate(order) if written.startswith("-"))
    if not names or any(name not in kinds for name in names):
        raise TypeError(f"{tuple(order)} is not an order of Job fields")
    if any(kinds[names[i]] is not FieldKind.INT for i in negated):
        raise TypeError(f"{tuple(order)}: only an INT field can be sorted descending")
    # One C call reads every field; attrgetter of one name gives the value, not a tuple.
    read = operator.attrgetter(*names) if len(names) > 1 else operator.attrgetter(*names * 2)
    width = len(names)

    def key(job: Job) -> tuple[object, ...]:
        values = list(read(job))[:width]
        for i in negated:
            values[i] = -values[i]
        return tuple(values)

    return key


#: The sort key of `CLAIM_ORDER` for a job (descending fields negated): sorting by it
#: is the order a claim takes due jobs in.
claim_order_key: Final = order_key(CLAIM_ORDER)


def claimable(job: Job, now: datetime) -> bool:
    """Whether a claim at `now` may take `job`: claimable status, and due."""
    return job.status in CLAIMABLE_STATUSES and job.run_at <= now


def lease_expired(job: Job, now: datetime) -> bool:
    """Whether `job` holds a lease that ran out before `now` (a rescue may take it)."""
    return job.status in LEASED_STATUSES and job.locked_until is not None and job.locked_until < now


def actions(status: JobStatus) -> tuple[JobEvent, ...]:
    """The client events legal for a job in `status`, in `CLIENT_EVENTS` order."""
    return tuple(event for event in CLIENT_EVENTS if event in TRANSITIONS[status])


def allowed(status: JobStatus, event: JobEvent) -> bool:
    """Whether `event` is legal for a job in `status`."""
    return event in TRANSITIONS[status]


#: `last_error` recorded when a lease runs out before its worker reported.
LOCK_EXPIRED = "lock expired"
#: Longest `last_error` kept; longer messages are cut, with a marker.
MAX_ERROR_LENGTH = 8192

_ERRORS: Final[Mapping[JobEvent, type[IllegalTransition]]] = {
    REQUEUE: CannotRequeue,
    DELETE: CannotDelete,
    CANCEL: CannotCancel,
}


class Apply(Protocol):
    """A compiled move: the job after it, from the job before it and the move's inputs."""

    def __call__(
        self,
        job: Job,
        now: datetime,
        token: str | None = None,
        lease: timedelta | None = None,
        *,
        backoff: Backoff | None = None,
        error: str | None = None,
        trace: str | None = None,
        result: JSONValue = None,
    ) -> Job: ...


def append_attempt(
    job: Job, now: datetime, error: str | None, trace: str | None
) -> tuple[AttemptError, ...]:
    """The history of `job` with the attempt that just ended appended."""
    return recorded(job.errors, attempt=job.retries + 1, at=now, error=error, traceback=trace)


def _check_rules() -> None:
    """Every mutable field has a rule, every rule a mutable field, every effect a rule."""
    if set(FIELD_RULES) != set(MUTABLE_FIELDS):
        raise TypeError(
            f"FIELD_RULES covers {sorted(FIELD_RULES)} but the mutable Job fields are"
            f" {sorted(MUTABLE_FIELDS)}: give each mutable field one rule"
        )
    for field, rule in FIELD_RULES.items():
        if rule.default != "keep" and rule.default not in rule.effects:
            raise TypeError(f"FIELD_RULES[{field!r}]: the default {rule.default!r} is no effect")
    for status, row in TRANSITIONS.items():
        for event, m in row.items():
            for field, effect in m.effects:
                effects = FIELD_RULES[field].effects if field in FIELD_RULES else {}
                if field not in FIELD_RULES or (effect != "keep" and effect not in effects):
                    raise TypeError(f"{status} -{event}->: no effect {effect!r} on {field!r}")


def _compile(m: Move) -> Apply:
    """Build the move as one constructor call, once: on the worker's path for every job,
    this costs what a hand-written copy would (`attrs.evolve` costs half as much again)."""
    values = []
    for name in JOB_FIELDS:
        effect = m.effect(name) if name in FIELD_RULES else "keep"
        expression = f"job.{name}" if effect == "keep" else FIELD_RULES[name].effects[effect]
        values.append(f"{name}={expression}")
    source = (
        "def apply(job, now, token=None, lease=None, *, backoff=None, error=None, trace=None,"
        f" result=None):\n    return Job({', '.join(values)})\n"
    )
    namespace: dict[str, object] = {
        "Job": Job,
        "target": m.target,
        "append_attempt": append_attempt,
    }
    exec(source, namespace)  # noqa: S102 - source built above from the table's own names
    apply = namespace["apply"]
    assert callable(apply)
    return apply


_check_rules()
#: status -> event -> the compiled move (deletions have none: the row is gone).
_APPLY: Final[Mapping[JobStatus, Mapping[JobEvent, Apply]]] = {
    status: {event: _compile(m) for event, m in row.items() if m.target is not None}
    for status, row in TRANSITIONS.items()
}


def _refuse(job: Job, event: JobEvent) -> IllegalTransition:
    sources = sorted(s.value for s, row in TRANSITIONS.items() if event in row)
    error = _ERRORS.get(event, IllegalTransition)
    return error(job.id, event.value, job.status.value, _either(sources))


def _either(names: list[str]) -> str:
    """`a`, `a or b`, `a, b or c`; "no" for none."""
    if len(names) <= 1:
        return names[0] if names else "no"
    return f"{', '.join(names[:-1])} or {names[-1]}"


def _apply(job: Job, event: JobEvent) -> Apply:
    apply = _APPLY[job.status].get(event)
    if apply is None:
        raise _refuse(job, event)
    return apply


def new_job(
    *,
    job_id: str,
    topic: str,
    payload: JSONValue,
    run_at: datetime,
    max_retries: int,
    now: datetime,
    priority: int = 0,
    unique_key: str | None = None,
) -> Job:
    """A fresh `pending` job (inputs already validated by the service)."""
    return Job(
        id=job_id,
        topic=topic,
        payload=payload,
        status=PENDING,
        run_at=run_at,
        max_retries=max_retries,
        priority=priority,
        unique_key=unique_key,
        created=now,
        updated=now,
    )


def claim(job: Job, *, now: datetime, lease: timedelta, token: str) -> Job:
    """`pending` and due -> `processing`, leased until `now + lease` under a new token."""
    apply = _apply(job, CLAIM)
    if job.run_at > now:
        raise IllegalTransition(job.id, "claim", f"due only at {job.run_at.isoformat()}", "due")
    return apply(job, now, token, lease)


def _check_lease(job: Job, token: str, now: datetime, event: str) -> None:
    if job.status not in LEASED_STATUSES:
        raise LockLost(job.id, f"cannot {event}: the job is {job.status.value}")
    if job.lock_token != token:
        raise LockLost(job.id, f"cannot {event}: another claim holds the job now")
    assert job.locked_until is not None
    if job.locked_until < now:
        raise LockLost(job.id, f"cannot {event}: the lease expired at {job.locked_until}")


def renew(job: Job, *, token: str, now: datetime, lease: timedelta, new_token: str) -> Job:
    """Extend a live lease held under `token` to `now + lease`, under `new_token`.

    The token changes on every renewal so that a rescuer which read the job while the
    old lease looked expired cannot overwrite the renewal: its write is guarded by the
    old token, which no longer matches."""
    _check_lease(job, token, now, "renew")
    return _apply(job, RENEW)(job, now, new_token, lease)


def complete(job: Job, *, token: str, now: datetime, result: JSONValue = None) -> Job:
    """`processing` under `token`, lease still valid -> `completed`, keeping `result`
    (the handler's return value, checked by the caller to be storable JSON)."""
    _check_lease(job, token, now, "complete")
    return _apply(job, COMPLETE)(job, now, result=result)


def fail(
    job: Job,
    *,
    token: str,
    error: str,
    now: datetime,
    backoff: Backoff,
    traceback: str | None = None,
) -> Job:
    """A failed attempt: back to `pending` after a backoff while retries remain, else
    `failed`; recorded in the attempt history with its `traceback`."""
    _check_lease(job, token, now, "fail")
    return _failed_attempt(job, error, now, backoff, traceback)


def expire(job: Job, *, now: datetime, backoff: Backoff) -> Job:
    """A lease that ran out counts as a failed attempt with the error "lock expired"."""
    if not lease_expired(job, now):
        raise IllegalTransition(job.id, "expire", job.status.value, "lease-expired processing")
    return _failed_attempt(job, LOCK_EXPIRED, now, backoff)


def _clip(error: str) -> str:
    return error if len(error) <= MAX_ERROR_LENGTH else error[:MAX_ERROR_LENGTH] + "…[truncated]"


def _failed_attempt(
    job: Job, error: str, now: datetime, backoff: Backoff, trace: str | None = None
) -> Job:
    error = _clip(error)
    if job.cancel_requested is not None:  # asked to stop: never retried
        return _aborted(job, now, f"cancelled ({error})", trace)
    event = RETRY if job.retries < job.max_retries else GIVE_UP
    return _apply(job, event)(job, now, backoff=backoff, error=error, trace=trace)


#: How often one job may snooze; the next snooze fails it (a handler looping on
#: `Snooze` would otherwise hold its job forever).
MAX_SNOOZES = 1000


def snooze(job: Job, *, token: str, now: datetime, delay: timedelta) -> Job:
    """The handler asked to run again after `delay`: `pending` at `now + delay`, the
    attempt not counted; `failed` once it has snoozed `MAX_SNOOZES` times; `cancelled`
    if a cancel was requested."""
    _check_lease(job, token, now, "snooze")
    if job.cancel_requested is not None:
        return _aborted(job, now)
    if job.snoozes >= MAX_SNOOZES:
        error = f"snoozed {MAX_SNOOZES} times; giving up"
        return _apply(job, GIVE_UP)(job, now, error=error)
    return _apply(job, SNOOZE)(job, now, backoff=lambda _: delay)


def give_up(
    job: Job, *, token: str, error: str, now: datetime, traceback: str | None = None
) -> Job:
    """The handler said the job can never succeed: `failed` now, whatever retries remain
    (`cancelled` if a cancel was requested)."""
    _check_lease(job, token, now, "give up")
    error = _clip(error)
    if job.cancel_requested is not None:
        return _aborted(job, now, f"cancelled ({error})", traceback)
    return _apply(job, GIVE_UP)(job, now, error=error, trace=traceback)


#: `last_error` of a job its worker stopped at a cancel request.
CANCELLED_ERROR = "cancelled"


def _aborted(
    job: Job, now: datetime, error: str = CANCELLED_ERROR, trace: str | None = None
) -> Job:
    return _apply(job, ABORT)(job, now, error=error, trace=trace)


def release(job: Job, *, token: str, now: datetime) -> Job:
    """Hand a claimed job back unrun (graceful stop): `pending`, due now, attempt not
    counted; a job asked to cancel ends `cancelled` instead."""
    _check_lease(job, token, now, "release")
    if job.cancel_requested is not None:
        return _aborted(job, now)
    return _apply(job, RELEASE)(job, now)


def abort(job: Job, *, token: str, now: datetime) -> Job:
    """The worker stopped the handler at the job's cancel request: `cancelled`."""
    _check_lease(job, token, now, "abort")
    return _aborted(job, now)


def cancel(job: Job, *, now: datetime) -> Job:
    """A client's cancel: a `pending` job is `cancelled` at once; a `processing` one keeps
    running with `cancel_requested` set (its worker stops it at its next renewal). Any
    other status raises `CannotCancel`."""
    return _apply(job, CANCEL)(job, now)


def requeue(job: Job, *, now: datetime) -> Job:
    """`failed` or `cancelled` -> `pending`, due now, with retries, lock, last error and
    cancel request cleared."""
    return _apply(job, REQUEUE)(job, now)


def check_delete(job: Job) -> None:
    """Raise `CannotDelete` unless the job's status allows `delete`."""
    if not allowed(job.status, DELETE):
        raise _refuse(job, DELETE)


def update(before: Job, after: Job) -> JobUpdate:
    """The guarded write that turns `before` into `after` in a store."""
    return JobUpdate(
        job=after, expected_status=before.status, expected_lock_token=before.lock_token
    )
