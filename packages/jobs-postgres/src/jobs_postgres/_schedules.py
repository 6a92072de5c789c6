"""`<table>_schedules` rows as `jobs_core.Schedule`s, and the statements the store runs.

The definition is kept as JSON text (`jobs_core.schedule_definition`), read back exactly;
`timing` (`jobs_core.timing_key`) sits apart so the upsert can keep `next_fire_at` when
an update leaves it unchanged, in the one statement.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from jobs_core import (
    Schedule,
    StoreError,
    schedule_definition,
    schedule_from_definition,
    timing_key,
)


def to_values(schedule: Schedule) -> dict[str, Any]:
    """The row of a schedule (column name -> value)."""
    definition = json.dumps(
        schedule_definition(schedule), ensure_ascii=False, separators=(",", ":")
    )
    return {
        "name": schedule.name,
        "topic": schedule.topic,
        "timing": timing_key(schedule),
        "definition": definition,
        "paused": schedule.paused,
        "next_fire_at": schedule.next_fire_at,
        "last_fired_at": schedule.last_fired_at,
        "last_job_id": schedule.last_job_id,
        "created": schedule.created,
        "updated": schedule.updated,
    }


def upsert(table: sa.Table, schedule: Schedule) -> sa.Insert:
    """Create, or update the definition keeping the state (and `next_fire_at` while the
    timing is the same); returns the row as stored."""
    statement = pg.insert(table).values(to_values(schedule))
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[table.c.name],
        set_={
            "topic": new.topic,
            "definition": new.definition,
            "timing": new.timing,
            "updated": new.updated,
            "next_fire_at": sa.case(
                (table.c.timing == new.timing, table.c.next_fire_at), else_=new.next_fire_at
            ),
        },
    ).returning(*table.c)


def from_row(row: Mapping[Any, Any]) -> Schedule:
    """A `Schedule` from its row; `StoreError` if it is no valid one."""
    name = row["name"]
    try:
        return schedule_from_definition(
            name,
            json.loads(row["definition"]),
            paused=row["paused"],
            next_fire_at=row["next_fire_at"],
            last_fired_at=row["last_fired_at"],
            last_job_id=row["last_job_id"],
            created=row["created"],
            updated=row["updated"],
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise StoreError(f"stored schedule {name!r} is unreadable: {exc}") from exc
