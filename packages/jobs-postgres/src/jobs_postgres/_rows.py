"""Rows to `Job` values and back; ids checked before they reach the database."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from jobs_core import Job, JobStatus


def dumps(value: object) -> str:
    """JSON text of a payload, as the core's canonical form writes it (strict, UTF-8)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


#: The canonical form of a UUID, as the core issues ids: lower-case 8-4-4-4-12 hex.
_CANONICAL_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_id(job_id: object) -> str | None:
    """`job_id` if it is a canonical lower-case UUID string, else None.

    Only the exact form the core issues matches, so `get("A1B2...")` behaves as it
    does on every other store (not found) instead of PostgreSQL's lenient parsing.
    """
    if isinstance(job_id, str) and _CANONICAL_UUID.fullmatch(job_id):
        return job_id
    return None


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def to_row(job: Job) -> dict[str, Any]:
    """Column values of a new job."""
    return {
        "id": job.id,
        "topic": job.topic,
        "payload": job.payload,
        "status": job.status.value,
        "run_at": job.run_at,
        "locked_until": job.locked_until,
        "lock_token": job.lock_token,
        "retries": job.retries,
        "max_retries": job.max_retries,
        "last_error": job.last_error,
        "created": job.created,
        "updated": job.updated,
    }


def to_job(row: Mapping[Any, Any]) -> Job:
    """The `Job` a row holds (times in UTC, id as its canonical string)."""
    run_at = _utc(row["run_at"])
    created = _utc(row["created"])
    updated = _utc(row["updated"])
    assert run_at is not None
    assert created is not None
    assert updated is not None
    return Job(
        id=str(row["id"]),
        topic=row["topic"],
        payload=row["payload"],
        status=JobStatus(row["status"]),
        run_at=run_at,
        locked_until=_utc(row["locked_until"]),
        lock_token=row["lock_token"],
        retries=row["retries"],
        max_retries=row["max_retries"],
        last_error=row["last_error"],
        created=created,
        updated=updated,
    )
