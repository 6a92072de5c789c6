"""The `ScheduleStore` port's operations on `jobs_schedules`, one whole port call each.

Like the hot calls they run fixed SQL on the store connection's own sqlite3 cursor
(`Session`). `fire` is the exactly-once step: one `BEGIN IMMEDIATE` transaction that
moves `next_fire_at` by compare-and-set and, only if that changed the row, inserts the
slot jobs; SQLite's write lock serialises it against every other process's firing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from jobs_core import (
    Job,
    Schedule,
    StoreError,
    schedule_definition,
    schedule_from_definition,
    timing_key,
)
from jobs_sqlite import _statements as sql
from jobs_sqlite._rows import TimeTexts, format_optional, format_time, insert_values, parse_time
from jobs_sqlite._sessions import Session

_COLUMNS: Final = (
    "name, topic, timing, definition, paused, next_fire_at, last_fired_at, last_job_id,"
    " created, updated"
)
_SELECT: Final = f"SELECT {_COLUMNS} FROM jobs_schedules"  # noqa: S608
#: Create, or update keeping the state (and the next slot while the timing is the same).
_SAVE: Final = (
    f"INSERT INTO jobs_schedules ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
    " ON CONFLICT (name) DO UPDATE SET topic = excluded.topic, definition = excluded.definition,"
    " next_fire_at = CASE WHEN jobs_schedules.timing = excluded.timing"
    " THEN jobs_schedules.next_fire_at ELSE excluded.next_fire_at END,"
    " timing = excluded.timing, updated = excluded.updated"
    f" RETURNING {_COLUMNS}"
)
_GET: Final = f"{_SELECT} WHERE name = ?"
_LIST: Final = f"{_SELECT} ORDER BY name"
_DUE: Final = (
    f"{_SELECT} WHERE paused = 0 AND next_fire_at <= ? ORDER BY next_fire_at, name LIMIT ?"
)
_DELETE: Final = "DELETE FROM jobs_schedules WHERE name = ?"
_PAUSE: Final = (
    "UPDATE jobs_schedules SET paused = ?, updated = ?,"  # noqa: S608
    " next_fire_at = coalesce(?, next_fire_at)"
    f" WHERE name = ? RETURNING {_COLUMNS}"
)
_FIRE: Final = (
    "UPDATE jobs_schedules SET next_fire_at = ?, last_fired_at = coalesce(?, last_fired_at),"
    " last_job_id = coalesce(?, last_job_id)"
    " WHERE name = ? AND next_fire_at = ? AND paused = 0"
)


def save(session: Session, schedule: Schedule) -> Schedule:
    """Upsert one schedule; the row as stored."""
    with session.write():
        (row,) = session.fetch(_SAVE, _values(schedule))
    return from_row(row)


def get(session: Session, name: str) -> Schedule | None:
    """The schedule, or None."""
    with session.read():
        rows = session.fetch(_GET, (name,))
    return from_row(rows[0]) if rows else None


def list_all(session: Session) -> list[Schedule]:
    """Every schedule, by name."""
    with session.read():
        rows = session.fetch(_LIST, ())
    return [from_row(row) for row in rows]


def due(session: Session, now: datetime, limit: int) -> list[Schedule]:
    """Unpaused schedules whose slot came, earliest first (one indexed query)."""
    with session.read():
        rows = session.fetch(_DUE, (format_time(now), max(limit, 0)))
    return [from_row(row) for row in rows]


def delete(session: Session, name: str) -> bool:
    """Delete one schedule; whether there was one."""
    with session.write():
        return session.change(_DELETE, (name,)) == 1


def set_paused(
    session: Session, name: str, paused: bool, now: datetime, next_fire_at: datetime | None
) -> Schedule | None:
    """Store the pause flag (and the next slot when given); the row, or None."""
    params = (int(paused), format_time(now), format_optional(next_fire_at), name)
    with session.write():
        rows = session.fetch(_PAUSE, params)
    return from_row(rows[0]) if rows else None


def fire(  # noqa: PLR0917 - the store thread passes the call's arguments in order
    session: Session,
    texts: TimeTexts,
    name: str,
    expected: datetime,
    following: datetime,
    jobs: Sequence[Job],
) -> bool:
    """Compare-and-set the next slot and insert the slot jobs, in one transaction."""
    last = jobs[-1] if jobs else None
    params = (
        format_time(following),
        None if last is None else format_time(last.run_at),
        None if last is None else last.id,
        name,
        format_time(expected),
    )
    with session.write():
        if session.change(_FIRE, params) != 1:
            return False
        if jobs:
            # A slot job's key is its slot's: a slot stored twice keeps the first job.
            rows = [insert_values(job, texts.text) for job in jobs]
            session.change_many(sql.INSERT_UNIQUE, rows)
    return True


def _values(schedule: Schedule) -> tuple[Any, ...]:
    definition = json.dumps(
        schedule_definition(schedule), ensure_ascii=False, separators=(",", ":")
    )
    return (
        schedule.name,
        schedule.topic,
        timing_key(schedule),
        definition,
        int(schedule.paused),
        format_time(schedule.next_fire_at),
        format_optional(schedule.last_fired_at),
        schedule.last_job_id,
        format_time(schedule.created),
        format_time(schedule.updated),
    )


def from_row(row: Sequence[Any]) -> Schedule:
    """A `Schedule` from a row in `_COLUMNS` order; `StoreError` if it is no valid one."""
    name, _topic, _timing, definition, paused, next_at, last_at, last_id, created, updated = row
    try:
        return schedule_from_definition(
            name,
            json.loads(definition),
            paused=bool(paused),
            next_fire_at=parse_time(next_at),
            last_fired_at=None if last_at is None else parse_time(last_at),
            last_job_id=last_id,
            created=parse_time(created),
            updated=parse_time(updated),
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise StoreError(f"stored schedule {name!r} is unreadable: {exc}") from exc
