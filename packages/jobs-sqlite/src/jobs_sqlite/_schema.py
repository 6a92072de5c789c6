"""The tables, and their idempotent creation with a recorded schema version.

`jobs` keeps one row per job; `jobs_schema` records which version of this layout the
file holds, so a later release can migrate an existing file step by step. Creation runs
in one `BEGIN IMMEDIATE` transaction, so several processes opening a new file at once
serialize on SQLite's write lock: one creates, the others find it done.

Indexes added after a layout version shipped are in `ADDED_INDEXES`: plain
`CREATE INDEX IF NOT EXISTS` statements that reach an existing file of the same version
the next time a store opens it (under the same write lock), without a version bump that
would make older releases refuse the file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    insert,
    inspect,
    select,
)

from jobs_core import StoreError

#: Version of the layout below; bump it and add a step to `_MIGRATIONS` when it changes.
SCHEMA_VERSION: Final = 1
#: Key of this package's row in `jobs_schema`.
COMPONENT: Final = "jobs"

metadata = MetaData()

#: One row per job. JSON payloads in TEXT; times as fixed-width UTC text (see `_rows`).
jobs_table = Table(
    "jobs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("topic", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("run_at", Text, nullable=False),
    Column("locked_until", Text, nullable=True),
    Column("lock_token", Text, nullable=True),
    Column("retries", Integer, nullable=False),
    Column("max_retries", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created", Text, nullable=False),
    Column("updated", Text, nullable=False),
    CheckConstraint(
        "status IN ('pending', 'processing', 'completed', 'failed')", name="jobs_status_known"
    ),
    # Serves the claim (status = 'pending' AND run_at <= now ORDER BY run_at, id) and
    # the lease sweep (status = 'processing'), and counting by status.
    Index("jobs_claim_idx", "status", "run_at", "id"),
    # Serves list(): newest first.
    Index("jobs_created_idx", "created", "id"),
    # Serves list(status=...): newest first within a status, and its total.
    Index("jobs_status_created_idx", "status", "created", "id"),
)

#: (name, DDL) of the indexes added to layout version 1 after it shipped; each runs on
#: every file that lacks it. A later numbered migration can fold these in.
ADDED_INDEXES: Final = (
    (
        "jobs_status_created_idx",
        "CREATE INDEX IF NOT EXISTS jobs_status_created_idx ON jobs (status, created, id)",
    ),
)

#: Which layout version the file holds, one row per component.
schema_table = Table(
    "jobs_schema",
    metadata,
    Column("component", Text, primary_key=True),
    Column("version", Integer, nullable=False),
)

#: version -> the step that upgrades a file from that version to the next.
_MIGRATIONS: Final[dict[int, Callable[[Connection], None]]] = {}


def stored_version(connection: Connection) -> int | None:
    """The schema version recorded in the file, or None if there is no schema yet."""
    if not inspect(connection).has_table(schema_table.name):
        return None
    return connection.scalar(
        select(schema_table.c.version).where(schema_table.c.component == COMPONENT)
    )


def missing_indexes(connection: Connection) -> list[str]:
    """The DDL of each `ADDED_INDEXES` entry the file does not have yet."""
    found = set(
        connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs'"
        ).scalars()
    )
    return [ddl for name, ddl in ADDED_INDEXES if name not in found]


def create_schema(connection: Connection) -> None:
    """Create or upgrade the tables on `connection`, inside its current transaction.

    Idempotent. Run it in a write transaction (`BEGIN IMMEDIATE`, as the engines of
    `jobs_sqlite.create_engine` do) so concurrent creators serialize.
    """
    version = stored_version(connection)
    if version == SCHEMA_VERSION:
        _add_indexes(connection)
        return
    if version is not None and version > SCHEMA_VERSION:
        raise StoreError(
            f"the jobs schema in this file is version {version}, newer than this"
            f" jobs-sqlite knows (up to {SCHEMA_VERSION}); upgrade jobs-sqlite"
        )
    metadata.create_all(connection, checkfirst=True)
    found = {column["name"] for column in inspect(connection).get_columns(jobs_table.name)}
    if version is None and found != set(jobs_table.c.keys()):
        raise StoreError(
            f"the file already has a table named {jobs_table.name!r} that is not a jobs"
            f" table (columns {sorted(found)}); use another database file"
        )
    if version is None:
        connection.execute(insert(schema_table).values(component=COMPONENT, version=SCHEMA_VERSION))
        return
    for step in range(version, SCHEMA_VERSION):
        _MIGRATIONS[step](connection)
    connection.execute(
        schema_table.update()
        .where(schema_table.c.component == COMPONENT)
        .values(version=SCHEMA_VERSION)
    )
    _add_indexes(connection)


def _add_indexes(connection: Connection) -> None:
    for ddl in missing_indexes(connection):
        connection.exec_driver_sql(ddl)
