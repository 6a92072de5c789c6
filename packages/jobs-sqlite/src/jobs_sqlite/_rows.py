"""Row conversion: `Job` <-> the SQLite columns (JSON in TEXT, times as sortable UTC text).

Times are stored as fixed-width `YYYY-MM-DDTHH:MM:SS.ffffffZ`, so comparing and ordering
the text is comparing and ordering the instants, and microseconds round-trip exactly.
A row that cannot be read back (bad JSON, bad time, unknown status) raises `StoreError`
naming the job, the column and the value: it is corrupt data, not a caller's mistake.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from jobs_core import InvalidPayload, Job, JobStatus, StoreError

#: Column order of every `SELECT` of whole jobs (the order of `_schema.jobs_table`).
COLUMNS: Final = (
    "id",
    "topic",
    "payload",
    "status",
    "run_at",
    "locked_until",
    "lock_token",
    "retries",
    "max_retries",
    "last_error",
    "created",
    "updated",
)
_TIME_WIDTH: Final = len("2030-01-01T00:00:00.000000Z")
_STATUSES: Final = {status.value: status for status in JobStatus}


def format_time(value: datetime) -> str:
    """Fixed-width ISO 8601 UTC text with microseconds; naive datetimes are refused."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError(f"datetime must be timezone-aware, got naive {value!r}")
    if offset:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


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
        return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
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


def mutable_values(job: Job) -> dict[str, Any]:
    """The columns a guarded update may change, under their column names."""
    return {
        "status": job.status.value,
        "run_at": format_time(job.run_at),
        "locked_until": format_optional(job.locked_until),
        "lock_token": job.lock_token,
        "retries": job.retries,
        "last_error": job.last_error,
        "updated": format_time(job.updated),
    }


def from_row(row: Sequence[Any], path: str) -> Job:
    """The `Job` stored in `row` (columns in `COLUMNS` order), or `StoreError` if corrupt."""
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
    column = "payload"
    try:
        value = json.loads(payload)
        column = "status"
        state = _STATUSES[status]
        column = "run_at"
        due = parse_time(run_at)
        column = "locked_until"
        lease = None if locked_until is None else parse_time(locked_until)
        column = "created"
        born = parse_time(created)
        column = "updated"
        changed = parse_time(updated)
        column = "retries"
        if not isinstance(retries, int) or not isinstance(max_retries, int):
            raise ValueError("retry counts must be integers")
        return Job(
            id=job_id,
            topic=topic,
            payload=value,
            status=state,
            run_at=due,
            locked_until=lease,
            lock_token=lock_token,
            retries=retries,
            max_retries=max_retries,
            last_error=last_error,
            created=born,
            updated=changed,
        )
    except (ValueError, TypeError, KeyError) as exc:
        shown = {
            "payload": payload,
            "status": status,
            "run_at": run_at,
            "locked_until": locked_until,
            "created": created,
            "updated": updated,
            "retries": (retries, max_retries),
        }[column]
        raise StoreError(
            f"SQLite store {path}: corrupt row for job {job_id!r}: column {column} holds"
            f" {_clip(shown)}, which cannot be read ({type(exc).__name__}: {exc})"
        ) from exc


def _clip(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
