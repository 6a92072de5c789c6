"""Row conversion: `Job` <-> the SQLite columns (JSON in TEXT, times as sortable UTC text).

Times are stored as fixed-width `YYYY-MM-DDTHH:MM:SS.ffffffZ`, so comparing and ordering
the text is comparing and ordering the instants, and microseconds round-trip exactly.
A row that cannot be read back (bad JSON, bad time, unknown status) raises `UnreadableJob`
naming the job, the column and the value: it is corrupt data, not a caller's mistake.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from jobs_core import (
    EARLIEST_TIME,
    JOB_FIELDS,
    LATEST_TIME,
    InvalidPayload,
    Job,
    JobStatus,
    JobUpdate,
    UnreadableJob,
)

#: Column order of every `SELECT` of whole jobs (one column per `Job` field, same name;
#: the order of `_schema.jobs_table`).
COLUMNS: Final = JOB_FIELDS
_TIME_WIDTH: Final = len("2030-01-01T00:00:00.000000Z")
_LOCAL_WIDTH: Final = _TIME_WIDTH - 1
_JSON: Final = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_loads: Final = json.JSONDecoder().decode
_STATUSES: Final = {status.value: status for status in JobStatus}


def format_time(value: datetime) -> str:
    """Fixed-width ISO 8601 UTC text with microseconds; naive datetimes are refused."""
    if value.tzinfo is not UTC:
        offset = value.utcoffset()
        if offset is None:
            raise ValueError(f"datetime must be timezone-aware, got naive {value!r}")
        if offset:
            value = value.astimezone(UTC)
    # An aware isoformat ends in its offset ("+00:00"), after exactly 26 characters.
    return value.isoformat(timespec="microseconds")[:_LOCAL_WIDTH] + "Z"


def format_optional(value: datetime | None) -> str | None:
    """`format_time`, passing `None` through."""
    return None if value is None else format_time(value)


def parse_time(text: str) -> datetime:
    """Read back what `format_time` wrote (exactly that form; anything else is corrupt)."""
    if not isinstance(text, str) or len(text) != _TIME_WIDTH or text[-1] != "Z":
        raise ValueError("not a fixed-width UTC time like 2030-01-01T00:00:00.000000Z")
    return datetime.fromisoformat(text)  # "Z" gives tzinfo=UTC


def dump_payload(payload: Any) -> str:
    """Compact JSON text of a payload (the service validated it already)."""
    try:
        return _JSON.encode(payload)
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"payload is not storable as JSON: {exc}") from exc


def to_row(job: Job) -> dict[str, Any]:
    """All columns of a new job."""
    return {
        "id": job.id,
        "topic": job.topic,
        "payload": dump_payload(job.payload),
        "status": job.status.value,
        "run_at": format_time(job.run_at),
        "locked_until": format_optional(job.locked_until),
        "lock_token": job.lock_token,
        "retries": job.retries,
        "max_retries": job.max_retries,
        "last_error": job.last_error,
        "created": format_time(job.created),
        "updated": format_time(job.updated),
    }


class TimeTexts:
    """Times and their stored text, both ways, remembered across a store's calls.

    Formatting and parsing a time cost more than the rest of a row: a claimed job's
    times come back in its result write, the rows of one claim share their lease and
    update times, and a new job's times are one instant. Bounded: forgets everything
    past `limit` entries. Not thread-safe; one store's calls run one at a time.
    """

    __slots__ = ("_limit", "_text_of", "_time_of")

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._text_of: dict[datetime, str] = {}
        self._time_of: dict[str, datetime] = {}

    def __len__(self) -> int:
        return len(self._time_of)

    def text(self, value: datetime) -> str:
        """`format_time(value)`."""
        found = self._text_of.get(value)
        if found is None:
            found = format_time(value)
            self._remember(value, found)
        return found

    def time(self, text: str) -> datetime:
        """`parse_time(text)`."""
        found = self._time_of.get(text)
        if found is None:
            found = parse_time(text)
            self._remember(found, text)
        return found

    def _remember(self, value: datetime, text: str) -> None:
        if len(self._time_of) >= self._limit:
            self._text_of.clear()
            self._time_of.clear()
        self._text_of[value] = text
        self._time_of[text] = value


def insert_values(job: Job, text: Callable[[datetime], str] = format_time) -> tuple[Any, ...]:
    """All columns of a new job, in `COLUMNS` order (for positional `?` parameters)."""
    lease = job.locked_until
    return (
        job.id,
        job.topic,
        dump_payload(job.payload),
        job.status.value,
        text(job.run_at),
        None if lease is None else text(lease),
        job.lock_token,
        job.retries,
        job.max_retries,
        job.last_error,
        text(job.created),
        text(job.updated),
    )


def guarded_values(
    change: JobUpdate, text: Callable[[datetime], str] = format_time
) -> tuple[Any, ...]:
    """The new values of `MUTABLE_FIELDS`, in that order, then the guard: id, expected
    status, expected lock token (the parameters of `_statements.GUARDED_UPDATE`)."""
    job = change.job
    lease = job.locked_until
    return (
        job.status.value,
        text(job.run_at),
        None if lease is None else text(lease),
        job.lock_token,
        job.retries,
        job.last_error,
        text(job.updated),
        job.id,
        _status_text(change.expected_status),
        change.expected_lock_token,
    )


def _status_text(status: JobStatus | str) -> str:
    """`JobStatus(status).value` without the enum lookup when it is a member already."""
    return status.value if type(status) is JobStatus else JobStatus(status).value


def from_rows(
    rows: Sequence[Sequence[Any]], path: str, texts: TimeTexts | None = None
) -> list[Job]:
    """`from_row` of each row, each distinct time text read once (see `TimeTexts`)."""
    read_time = (texts if texts is not None else TimeTexts()).time
    return [from_row(row, path, read_time) for row in rows]


def decode_each(
    rows: Sequence[Sequence[Any]], path: str, texts: TimeTexts | None = None
) -> tuple[list[Job], list[tuple[Sequence[Any], UnreadableJob]]]:
    """Each row decoded on its own: the readable jobs, and each unreadable row with its error
    (so one corrupt row does not hide the others from a claim or a rescue sweep)."""
    read_time = (texts if texts is not None else TimeTexts()).time
    jobs: list[Job] = []
    bad: list[tuple[Sequence[Any], UnreadableJob]] = []
    for row in rows:
        try:
            jobs.append(from_row(row, path, read_time))
        except UnreadableJob as exc:
            bad.append((row, exc))
    return jobs, bad


def from_row(
    row: Sequence[Any], path: str, read_time: Callable[[str], datetime] = parse_time
) -> Job:
    """The `Job` stored in `row` (columns in `COLUMNS` order), or `UnreadableJob` if corrupt.

    The fast path checks nothing twice; only a row that fails is looked at again, column
    by column, to say which value is wrong.
    """
    try:
        (
            job_id,
            topic,
            payload,
            status,
            run_at,
            locked_until,
            lock_token,
            retries,
            max_retries,
            last_error,
            created,
            updated,
        ) = row
        if type(retries) is not int or type(max_retries) is not int:
            raise TypeError("retry counts must be integers")
        return Job(
            id=job_id,
            topic=topic,
            payload=_loads(payload),
            status=_STATUSES[status],
            run_at=read_time(run_at),
            locked_until=None if locked_until is None else read_time(locked_until),
            lock_token=lock_token,
            retries=retries,
            max_retries=max_retries,
            last_error=last_error,
            created=read_time(created),
            updated=read_time(updated),
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise _corrupt(row, path, exc) from exc


def _corrupt(row: Sequence[Any], path: str, exc: Exception) -> UnreadableJob:
    """Name the first column of `row` that cannot be read (or, failing that, `exc`)."""
    values = dict(zip(COLUMNS, row, strict=False))
    readers: list[tuple[str, Callable[[Any], object]]] = [
        ("payload", _loads),
        ("status", _STATUSES.__getitem__),
        ("run_at", _job_time),
        ("locked_until", lambda v: None if v is None else _job_time(v)),
        ("created", _job_time),
        ("updated", _job_time),
    ]
    column: str = "row"
    shown: object = tuple(row)
    problem: Exception = exc
    for name, read in readers:
        try:
            read(values.get(name))
        except (ValueError, TypeError, KeyError) as found:
            column, shown, problem = name, values.get(name), found
            break
    else:
        counts = (values.get("retries"), values.get("max_retries"))
        if not all(type(count) is int for count in counts):
            column, shown = "retries", counts
    status = values.get("status")
    return UnreadableJob(
        str(values.get("id")),
        f"corrupt row: column {column} holds {_clip(shown)}, which cannot be read"
        f" ({type(problem).__name__}: {problem})",
        status if status in _STATUSES else None,
        store=f"SQLite store {path}",
    )


def _job_time(text: str) -> datetime:
    """`parse_time`, also refusing instants outside the range a `Job` may hold."""
    value = parse_time(text)
    if not EARLIEST_TIME <= value <= LATEST_TIME:
        raise ValueError(f"outside {EARLIEST_TIME.isoformat()}..{LATEST_TIME.isoformat()}")
    return value


def _clip(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
