"""The jobs table as today's code reads and writes it, derived from the core's `JOB_SCHEMA`.

The `sa.Table` here describes the table the numbered steps of `_migrations` build (a
test compares the two through the catalog); it is never used to create one, so the
only way a table comes to be is the one path every older table is upgraded along.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

import sqlalchemy as sa

from jobs_core import (
    ACTIVE_STATUSES,
    CLAIM_ORDER,
    CLAIMABLE_STATUSES,
    JOB_SCHEMA,
    LEASED_STATUSES,
    FieldKind,
    JobStatus,
)
from jobs_postgres._rows import job_columns

# The lifecycle's sets, each of one status today, compiled into the SQL as literals (so
# the partial indexes match the prepared statements' generic plans). A second status in
# a set fails here, at import: the statements would then need `IN (...)`.
#: The status a claim takes jobs from (the partial claim index's predicate).
(PENDING,) = (status.value for status in CLAIMABLE_STATUSES)
#: The status of a leased job (a claim's target; the rescue's and the lock check's).
(LEASED,) = (status.value for status in LEASED_STATUSES)
#: The fields holding a `JobStatus`, each with a CHECK constraint of its own.
STATUS_FIELDS: Final = tuple(spec.name for spec in JOB_SCHEMA if spec.kind is FieldKind.STATUS)


def quote(name: str) -> str:
    """`name` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """`value` as a quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


#: Where a job holds its unique key: the partial unique index's predicate, which the
#: insert's `ON CONFLICT` target repeats (`_statements`) so PostgreSQL infers the index.
HELD_KEY: Final = (
    "unique_key IS NOT NULL AND status IN"
    f" ({', '.join(literal(s.value) for s in JobStatus if s in ACTIVE_STATUSES)})"
)


def status_check(column: str, statuses: Iterable[str] | None = None) -> str:
    """The CHECK expression allowing `statuses` (default: every `JobStatus`) in `column`."""
    allowed = [s.value for s in JobStatus] if statuses is None else list(statuses)
    return f"{quote(column)} IN ({', '.join(literal(s) for s in allowed)})"


def bounds_check(column: str, low: int, high: int) -> str:
    """The CHECK expression keeping the integer `column` within `low`..`high`."""
    return f"{quote(column)} BETWEEN {low} AND {high}"


def claim_order(prefix: str = "") -> str:
    """`CLAIM_ORDER` as an SQL ORDER BY list (a leading `-` sorts that field descending)."""
    return ", ".join(
        f"{prefix}{name.removeprefix('-')}{' DESC' if name.startswith('-') else ''}"
        for name in CLAIM_ORDER
    )


class Schema:
    """SQLAlchemy Core objects for one jobs table (name and PostgreSQL schema configurable)."""

    def __init__(self, table: str = "jobs", schema: str | None = None) -> None:
        self.name = table
        self.schema = schema
        self.metadata = sa.MetaData(schema=schema)
        self.jobs = sa.Table(
            table,
            self.metadata,
            *job_columns(),
            *(
                sa.CheckConstraint(status_check(name), name=self.status_check_name(name))
                for name in STATUS_FIELDS
            ),
            sa.CheckConstraint(
                f"(status = '{LEASED}') = (lock_token IS NOT NULL AND locked_until IS NOT NULL)",
                name=f"{table}_lock_check",
            ),
            *(
                sa.CheckConstraint(
                    bounds_check(spec.name, *spec.bounds), name=f"{table}_{spec.name}_check"
                )
                for spec in JOB_SCHEMA
                if spec.bounds is not None
            ),
        )
        c = self.jobs.c
        # The claim reads this index only: one ordered walk per claimed topic over its
        # pending jobs in `CLAIM_ORDER`, so no plan needs to sort (see `_statements`).
        sa.Index(
            f"{table}_pending_topic_idx",
            c.topic,
            *(c[name[1:]].desc() if name.startswith("-") else c[name] for name in CLAIM_ORDER),
            postgresql_where=c.status == PENDING,
        )
        # expired(): processing jobs by lease end.
        sa.Index(
            f"{table}_processing_idx",
            c.locked_until,
            c.id,
            postgresql_where=c.status == JobStatus.PROCESSING.value,
        )
        # list(): newest first, optionally of one topic.
        sa.Index(f"{table}_created_idx", c.created, c.id)
        sa.Index(f"{table}_topic_created_idx", c.topic, c.created, c.id)
        # At most one active job per (topic, unique_key): the insert's ON CONFLICT
        # target, and what refuses a requeue over a held key.
        sa.Index(
            self.unique_key_index,
            c.topic,
            c.unique_key,
            unique=True,
            postgresql_where=sa.text(HELD_KEY),
        )
        #: Per-topic policies (`jobs_core.TopicPolicy`): a row only while a topic is
        #: paused or limited. A limited claim locks its topics' rows (`FOR UPDATE`).
        self.topics = sa.Table(
            f"{table}_topics",
            self.metadata,
            sa.Column("topic", sa.Text, primary_key=True),
            sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
            sa.Column("max_running", sa.Integer, nullable=True),
            sa.CheckConstraint("max_running >= 0", name=f"{table}_topics_max_running_check"),
        )
        #: Stored schedules (`jobs_core.Schedule`), made by the schedules migration step.
        self.schedules = sa.Table(
            f"{table}_schedules",
            self.metadata,
            sa.Column("name", sa.Text, primary_key=True),
            sa.Column("topic", sa.Text, nullable=False),
            sa.Column("timing", sa.Text, nullable=False),
            sa.Column("definition", sa.Text, nullable=False),
            sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
            sa.Column("next_fire_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("last_fired_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("last_job_id", sa.Text, nullable=True),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        )
        sa.Index(
            f"{table}_schedules_due_idx",
            self.schedules.c.next_fire_at,
            postgresql_where=sa.not_(self.schedules.c.paused),
        )
        #: One row per applied migration step (the same shape in every store).
        self.versions = sa.Table(
            f"{table}_schema_version",
            self.metadata,
            sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("name", sa.Text, nullable=False),
            sa.Column(
                "applied", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
            ),
        )

    @property
    def unique_key_index(self) -> str:
        """The name of the partial unique index of active jobs' keys."""
        return f"{self.name}_unique_key_idx"

    def status_check_name(self, column: str = "status") -> str:
        """The name of the CHECK constraint on the status column `column`."""
        return f"{self.name}_{column}_check"

    def sql(self, name: str) -> str:
        """The relation `name` of this table's schema, quoted and qualified for SQL."""
        return f"{quote(self.schema)}.{quote(name)}" if self.schema else quote(name)

    @property
    def qualified(self) -> str:
        """`schema.table` (or just `table`), as used in messages and keys."""
        return f"{self.schema}.{self.name}" if self.schema else self.name

    @property
    def channel(self) -> str:
        """The NOTIFY channel of this table (at most 63 bytes, PostgreSQL's limit)."""
        return f"jobs_wake.{self.qualified}"[:63]

    @property
    def lock_key(self) -> int:
        """A stable signed 64-bit advisory-lock key for this table's DDL."""
        digest = hashlib.blake2b(f"jobs_postgres:{self.qualified}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big", signed=True)
