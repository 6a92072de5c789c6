"""Value objects of the domain: the job, its status, and the shapes of queries and answers."""

from __future__ import annotations

import enum
import operator
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from jobs_core._fields import FieldKind, FieldSpec, job_field, schema_of
from jobs_core._history import AttemptError
from jobs_core._payload import unmarshal

if TYPE_CHECKING:
    JSONValue = None | bool | int | float | str | Sequence["JSONValue"] | Mapping[str, "JSONValue"]
else:
    JSONValue = Any

T = TypeVar("T")

ID, TEXT, JSON, TIME, INT, STATUS, ERRORS = (
    FieldKind.ID,
    FieldKind.TEXT,
    FieldKind.JSON,
    FieldKind.TIME,
    FieldKind.INT,
    FieldKind.STATUS,
    FieldKind.ERRORS,
)

#: The earliest and latest instants a job may hold (`run_at`, leases, timestamps).
#: Both stores round-trip every instant in between exactly. The ends of `datetime` are
#: excluded on purpose: asyncpg maps `datetime.min`/`datetime.max` to PostgreSQL's
#: `-infinity`/`infinity` and reads those back as naive values, and converting an
#: instant within a day of either end to a local time zone overflows. A day of margin
#: each side keeps every offset (at most 24 h) safe.
EARLIEST_TIME = datetime(1, 1, 2, tzinfo=UTC)
LATEST_TIME = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)

#: The range of a job's `priority` (larger runs first; the default is 0): Django Tasks'
#: range and direction, so a Django backend maps priorities as they are.
MIN_PRIORITY = -100
MAX_PRIORITY = 100

#: The longest `unique_key` (characters): a key names a thing, it does not carry data.
MAX_UNIQUE_KEY_LENGTH = 255


class JobStatus(enum.StrEnum):
    """Where a job is in its lifecycle; `"pending"` and `JobStatus.PENDING` compare equal."""

    #: Waiting for its `run_at` and a free worker.
    PENDING = "pending"
    #: Claimed by a worker that holds its lease (`lock_token`, `locked_until`).
    PROCESSING = "processing"
    #: Its handler returned. Final.
    COMPLETED = "completed"
    #: Its last allowed attempt failed. Final unless requeued.
    FAILED = "failed"
    #: Cancelled by a client before it ran, or stopped by its worker at a cancel
    #: request. Final unless requeued; never retried.
    CANCELLED = "cancelled"


@attrs.frozen(kw_only=True)
class Job:
    """One unit of work. Immutable: every change is a new value made by a transition.

    Each field is declared once, here, with its kind and roles (`job_field`); the
    stores' columns and codecs and the API's job shape are built from `JOB_SCHEMA`.
    """

    id: str = job_field(ID, doc="Unique id, a lower-case UUID the core issues.")
    topic: str = job_field(TEXT, doc="The handler topic.")
    payload: JSONValue = job_field(
        JSON, bulky=True, repr=False, doc="The handler's input, any JSON value."
    )
    status: JobStatus = job_field(STATUS, mutable=True, claim=True, doc="Lifecycle status.")
    run_at: datetime = job_field(
        TIME, mutable=True, option=True, doc="Run no earlier than this (default: now)."
    )
    locked_until: datetime | None = job_field(
        TIME,
        nullable=True,
        mutable=True,
        claim=True,
        default=None,
        doc="When the current lease ends; null unless the job is processing.",
    )
    #: Fencing token of the current lease; a new one on every claim, `None` when not processing.
    lock_token: str | None = job_field(
        TEXT,
        nullable=True,
        mutable=True,
        claim=True,
        wire=False,
        default=None,
        repr=False,
        doc="Fencing token of the current lease; never shown.",
    )
    retries: int = job_field(
        INT, mutable=True, default=0, doc="Failed attempts so far that were retried."
    )
    max_retries: int = job_field(
        INT, option=True, doc="Retries after the first attempt (default from the config)."
    )
    priority: int = job_field(
        INT,
        option=True,
        default=0,
        bounds=(MIN_PRIORITY, MAX_PRIORITY),
        doc=f"Larger runs first, from {MIN_PRIORITY} to {MAX_PRIORITY} (default 0); due jobs"
        " of equal priority run in run_at order.",
    )
    unique_key: str | None = job_field(
        TEXT,
        nullable=True,
        option=True,
        default=None,
        doc="At most one pending or processing job of the topic holds this key; enqueueing"
        " another returns that one (null: no key).",
    )
    snoozes: int = job_field(
        INT, mutable=True, default=0, doc="Times its handler snoozed it (not counted as attempts)."
    )
    last_error: str | None = job_field(
        TEXT,
        nullable=True,
        mutable=True,
        default=None,
        doc="The last failure's message; null if the job never failed.",
    )
    errors: tuple[AttemptError, ...] = job_field(
        ERRORS,
        mutable=True,
        bulky=True,
        default=(),
        repr=False,
        doc="Its failed attempts, newest last (the last 20; a requeue keeps them).",
    )
    result: JSONValue = job_field(
        JSON,
        nullable=True,
        mutable=True,
        bulky=True,
        default=None,
        repr=False,
        doc="What its handler returned (JSON); null if nothing, or not completed.",
    )
    cancel_requested: datetime | None = job_field(
        TIME,
        nullable=True,
        mutable=True,
        default=None,
        doc="When a client asked to cancel the job while it ran; null if never.",
    )
    created: datetime = job_field(TIME, doc="When the job was enqueued.")
    updated: datetime = job_field(TIME, mutable=True, claim=True, doc="When it last changed.")

    def __attrs_post_init__(self) -> None:
        # Every time is timezone-aware and in EARLIEST_TIME..LATEST_TIME. One check for
        # all of them rather than a validator per field: the worker builds two jobs per
        # job it runs.
        for value in _times_of(self):
            if value is not None and (
                (value.tzinfo is not UTC and value.utcoffset() is None)
                or not EARLIEST_TIME <= value <= LATEST_TIME
            ):
                raise ValueError(_bad_time_field(self))

    def unmarshal_payload(self, into: type[T]) -> T:
        """Structure the payload into `into` (attrs class, dataclass, dict, ...) with cattrs.

        Raises `InvalidPayload` naming every field that does not fit.
        """
        return unmarshal(self.payload, into)


def _bad_time_field(job: Job) -> str:
    for name in TIME_FIELDS:
        value = getattr(job, name)
        problem = None if value is None else time_problem(value, name)
        if problem is not None:
            return problem
    raise AssertionError("no bad time found")


def time_problem(value: datetime, name: str) -> str | None:
    """Why `value` cannot be a job's time (naive, or outside the stored range), or None."""
    if value.utcoffset() is None:
        return f"{name} must be timezone-aware, got naive {value.isoformat()}"
    if not EARLIEST_TIME <= value <= LATEST_TIME:
        return (
            f"{name} must be between {_iso(EARLIEST_TIME)} and {_iso(LATEST_TIME)},"
            f" got {value.isoformat()}"
        )
    return None


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@attrs.frozen(kw_only=True)
class EnqueueOptions:
    """Per-job options; `None` means the default (run now, the `JobsConfig` retries,
    priority 0).

    One field per `Job` field declared with `option=True`, of the same name (checked at
    import). `priority` is an integer from `MIN_PRIORITY` to `MAX_PRIORITY`; larger runs
    first. `unique_key` (1 to `MAX_UNIQUE_KEY_LENGTH` characters, scoped to the topic):
    while a `pending` or `processing` job of the topic holds it, enqueueing stores nothing
    and returns that job.
    """

    run_at: datetime | None = None
    max_retries: int | None = None
    priority: int | None = None
    unique_key: str | None = None


@attrs.frozen(kw_only=True)
class JobQuery:
    """Filters and paging of `list()`; `None` filters match everything.

    `payloads=False` leaves the bulky fields (`BULKY_FIELDS`: the payload, the attempt
    history, the result) unread: items carry `payload=None`, `errors=()`, `result=None`,
    for listings that show only the other fields. `max_payload_bytes` bounds the bytes
    of one page's bulky fields, measured as the length of their stored JSON text: the
    page stops before the row that would take it over the budget, but always holds at
    least one row when one matches, so a job bigger than the budget can still be read.
    """

    topic: str | None = None
    status: JobStatus | None = None
    limit: int = 20
    offset: int = 0
    payloads: bool = True
    max_payload_bytes: int | None = None


@attrs.frozen(kw_only=True)
class JobPage:
    """One page of `list()`: newest first, with `total` counted under the same filters.

    `truncated` is True when the payload byte budget ended the page before `limit` rows
    while more matched; the next page then starts at `offset + len(items)`. `payloads`
    says whether the items carry their payloads (False: every payload is `None`).
    """

    items: Sequence[Job]
    total: int
    limit: int
    offset: int
    payloads: bool = True
    truncated: bool = False


def rows_within_budget(payload_sizes: Iterable[int], max_payload_bytes: int) -> int:
    """How many leading rows of a page fit `max_payload_bytes` (`JobQuery`'s rule).

    Rows are taken while their running payload size stays within the budget; the first
    row is always taken, so a page is never empty because one payload is too big.
    """
    taken = used = 0
    for size in payload_sizes:
        used += size
        if taken and used > max_payload_bytes:
            break
        taken += 1
    return taken


@attrs.frozen(kw_only=True)
class JobStats:
    """Counts per status; `success_rate` is completed / (completed + failed), 0.0 when none."""

    pending: int
    processing: int
    completed: int
    failed: int
    cancelled: int
    total: int
    success_rate: float

    @classmethod
    def from_counts(cls, counts: Mapping[JobStatus, int]) -> JobStats:
        """Derive totals and the success rate from per-status counts (missing = 0)."""
        by = {status: counts.get(status, 0) for status in JobStatus}
        finished = by[JobStatus.COMPLETED] + by[JobStatus.FAILED]
        return cls(
            pending=by[JobStatus.PENDING],
            processing=by[JobStatus.PROCESSING],
            completed=by[JobStatus.COMPLETED],
            failed=by[JobStatus.FAILED],
            cancelled=by[JobStatus.CANCELLED],
            total=sum(by.values()),
            success_rate=by[JobStatus.COMPLETED] / finished if finished else 0.0,
        )


#: Every field of `Job` with its kind and roles, in declaration order.
JOB_SCHEMA: tuple[FieldSpec, ...] = schema_of(Job)

#: Every field of `Job`, in declaration order: stores name their columns after these and
#: read rows back in this order.
JOB_FIELDS: tuple[str, ...] = tuple(spec.name for spec in JOB_SCHEMA)

#: The fields a guarded write may change; a job's other fields never change once stored.
MUTABLE_FIELDS: tuple[str, ...] = tuple(spec.name for spec in JOB_SCHEMA if spec.mutable)

#: The fields a claim sets (the rest of a claimed job is as it was stored).
CLAIM_FIELDS: tuple[str, ...] = tuple(spec.name for spec in JOB_SCHEMA if spec.claim)

#: The fields a client may set when enqueuing, each an `EnqueueOptions` field.
OPTION_FIELDS: tuple[str, ...] = tuple(spec.name for spec in JOB_SCHEMA if spec.option)

#: The fields that may be large (`FieldSpec.bulky`), left unread by `JobQuery(payloads=False)`.
BULKY_FIELDS: tuple[str, ...] = tuple(spec.name for spec in JOB_SCHEMA if spec.bulky)

#: What a listing without payloads puts in each bulky field (`FieldSpec.unread`).
UNREAD_BULKY: Mapping[str, Any] = {spec.name: spec.unread for spec in JOB_SCHEMA if spec.bulky}

#: The fields the API shows.
WIRE_FIELDS: tuple[str, ...] = tuple(spec.name for spec in JOB_SCHEMA if spec.wire)

#: The fields holding instants (each checked against the stored time range).
TIME_FIELDS: tuple[str, ...] = tuple(spec.name for spec in JOB_SCHEMA if spec.kind is TIME)

#: The instants of a job, as a tuple (read on every `Job` built, so one C call).
_times_of = operator.attrgetter(*TIME_FIELDS)

_options = tuple(field.name for field in attrs.fields(EnqueueOptions))
if _options != OPTION_FIELDS:  # pragma: no cover - a declaration mistake, caught at import
    raise TypeError(
        f"EnqueueOptions declares {_options}, but the Job fields marked option=True are"
        f" {OPTION_FIELDS}: give each option field an EnqueueOptions field, in order"
    )


@attrs.frozen(kw_only=True)
class JobUpdate:
    """A write the core decided: store `job`'s mutable fields if the row still matches.

    The guard is the row's `status` and `lock_token` as the core last saw them; a store
    writes only when both still hold (compare-and-set), so a stale worker's report or a
    lost race changes nothing. Only the `MUTABLE_FIELDS` are written.
    """

    job: Job
    expected_status: JobStatus
    expected_lock_token: str | None
