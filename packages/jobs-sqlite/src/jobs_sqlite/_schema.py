"""The tables as today's code reads and writes them, derived from the job schema.

`jobs_table` has one column per `jobs_core.JOB_SCHEMA` field (its type from `_rows.KINDS`),
a CHECK that the status is a `JobStatus`, and the indexes the statements use. It
describes the layout; it never creates one: every file, new or old, gets its tables from
the numbered steps of `_migrations`, and a test checks that a file migrated from nothing
has exactly this table. So a change here (a field, a status) fails that test until a
step makes the change in existing files too.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    CheckConstraint,
    Column,
    ColumnElement,
    Connection,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    text,
)

from jobs_core import CLAIM_ORDER, JOB_SCHEMA, FieldKind, JobStatus
from jobs_sqlite._migrations import LEGACY_TABLE, VERSION_TABLE, latest_version, migrate
from jobs_sqlite._rows import KINDS
from jobs_sqlite._statements import HELD_KEY

#: Version of the layout below: the last step of `_migrations.MIGRATIONS`; computing it
#: checks that list at import.
SCHEMA_VERSION: Final = latest_version()

metadata = MetaData()

_STATUS: Final = next(spec.name for spec in JOB_SCHEMA if spec.kind is FieldKind.STATUS)


def status_check(column: str = _STATUS) -> str:
    """The CHECK condition that `column` holds a `JobStatus` value (in declaration order)."""
    return f"{column} IN ({', '.join(repr(status.value) for status in JobStatus)})"


def bounds_check(column: str, low: int, high: int) -> str:
    """The CHECK condition that the integer `column` lies in `low`..`high`."""
    return f"{column} BETWEEN {low} AND {high}"


#: One row per job. JSON payloads in TEXT; times as fixed-width UTC text (see `_rows`).
jobs_table = Table(
    "jobs",
    metadata,
    *(
        Column(
            spec.name,
            KINDS[spec.kind].column,
            primary_key=spec.kind is FieldKind.ID,
            nullable=spec.nullable,
        )
        for spec in JOB_SCHEMA
    ),
    CheckConstraint(status_check(), name="jobs_status_known"),
    *(
        CheckConstraint(bounds_check(spec.name, *spec.bounds), name=f"jobs_{spec.name}_range")
        for spec in JOB_SCHEMA
        if spec.bounds is not None
    ),
    # Serves list(): newest first.
    Index("jobs_created_idx", "created", "id"),
    # Serves list(status=...): newest first within a status, and its total.
    Index("jobs_status_created_idx", _STATUS, "created", "id"),
)


def _ordered(name: str) -> ColumnElement[object]:
    """A column of `CLAIM_ORDER` as an index key (a leading `-`: descending)."""
    column = jobs_table.c[name.removeprefix("-")]
    return column.desc() if name.startswith("-") else column


# Serves the claim (status = 'pending' AND run_at <= now ORDER BY CLAIM_ORDER: one walk
# in index order, no sort) and the lease sweep (status = 'processing'), and counting by
# status.
Index("jobs_claim_idx", jobs_table.c[_STATUS], *(_ordered(name) for name in CLAIM_ORDER))

# Holds at most one active job per (topic, unique_key): the target of the insert's
# `ON CONFLICT`, and what makes a requeue over a held key fail.
Index(
    "jobs_unique_key_idx",
    jobs_table.c.topic,
    jobs_table.c.unique_key,
    unique=True,
    sqlite_where=text(HELD_KEY),
)

#: Per-topic policies (`jobs_core.TopicPolicy`): a row only for a topic that is paused
#: or limited; the claim reads it in its own write transaction.
topics_table = Table(
    "jobs_topics",
    metadata,
    Column("topic", Text, primary_key=True),
    Column("paused", Integer, nullable=False, server_default=text("0")),
    Column("max_running", Integer, nullable=True),
    CheckConstraint("paused IN (0, 1)", name="jobs_topics_paused_flag"),
    CheckConstraint("max_running >= 0", name="jobs_topics_max_running_range"),
)

#: Stored schedules (`jobs_core.Schedule`), written by `_migrations.SCHEDULES_LAYOUT`.
schedules_table = Table(
    "jobs_schedules",
    metadata,
    Column("name", Text, primary_key=True),
    Column("topic", Text, nullable=False),
    Column("timing", Text, nullable=False),
    Column("definition", Text, nullable=False),
    Column("paused", Integer, nullable=False, server_default=text("0")),
    Column("next_fire_at", Text, nullable=False),
    Column("last_fired_at", Text, nullable=True),
    Column("last_job_id", Text, nullable=True),
    Column("created", Text, nullable=False),
    Column("updated", Text, nullable=False),
    CheckConstraint("paused IN (0, 1)", name="jobs_schedules_paused_flag"),
    Index("jobs_schedules_due_idx", "paused", "next_fire_at"),
)

#: One row per applied migration step (the shape every jobs store uses).
version_table = Table(
    VERSION_TABLE,
    metadata,
    Column("version", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("applied", Text, nullable=False),
)

#: The version record of release 1, kept up to date so that release refuses newer files.
schema_table = Table(
    LEGACY_TABLE,
    metadata,
    Column("component", Text, primary_key=True),
    Column("version", Integer, nullable=False),
)


def create_schema(connection: Connection) -> None:
    """Create or upgrade the tables on `connection`, inside its current transaction.

    Runs the migration steps the file lacks, in order; idempotent. Run it in a write
    transaction (`BEGIN IMMEDIATE`, as the engines of `jobs_sqlite.create_engine` do)
    so concurrent creators serialize. A file newer than this release raises
    `jobs_core.SchemaTooNew` before anything is written.
    """
    migrate(connection, str(connection.engine.url.database or ":memory:"))
