"""Numbered schema migrations: every file, new or old, is built by the same steps.

`MIGRATIONS` lists the steps in order, numbered from 1 (the first released layout, kept
as the literal DDL that release ran: never generated from today's `jobs_table`, which
later steps change). A new file runs them all; a file at version n runs those above n.
`migrate` runs inside the caller's write transaction: the store's `BEGIN IMMEDIATE`, so
the processes that open an old file at once queue on SQLite's write lock, the first
migrates it and the others find it done. A step is one transaction with the rest: a
failure leaves the file as it was.

Each applied step is a row of `jobs_schema_version(version, name, applied)`, the
shape every jobs store uses. Release 1 recorded its version in
`jobs_schema(component, version)` instead; that row is read as version 1 and kept equal
to the newest step, so release 1 (which reads only it) refuses a migrated file as
"newer" rather than writing rows it does not understand.

To change the layout: change the job schema (or `JobStatus`), then append a step that
makes the same change to existing files. SQLite's ALTER TABLE cannot change a CHECK or
a column's type, so such a step calls `rebuild_table` with the table's new definition,
written out literally.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from sqlalchemy import Connection

from jobs_core import SchemaTooNew, StoreError, check_migration_steps
from jobs_sqlite._rows import format_time

#: One row per applied step.
VERSION_TABLE: Final = "jobs_schema_version"
#: Release 1's version record: one row, (`COMPONENT`, version).
LEGACY_TABLE: Final = "jobs_schema"
#: Key of this package's row in `LEGACY_TABLE`.
COMPONENT: Final = "jobs"

Fetch = Callable[[str, Sequence[Any]], Sequence[Sequence[Any]]]


class Migration(NamedTuple):
    """One numbered step: `apply` changes the file on the connection it is given, in
    the migration's transaction, and runs once per file."""

    version: int
    name: str
    apply: Callable[[Connection], None]


def _run_all(*statements: str) -> Callable[[Connection], None]:
    def apply(connection: Connection) -> None:
        for statement in statements:
            connection.exec_driver_sql(statement)

    return apply


#: The tables and indexes release 1 created, as it created them (SQLite's own record of
#: them in `sqlite_master`). Frozen: never edit it, add a step.
V1_LAYOUT: Final = (
    (
        "CREATE TABLE jobs (\n"
        "\tid TEXT NOT NULL, \n"
        "\ttopic TEXT NOT NULL, \n"
        "\tpayload TEXT NOT NULL, \n"
        "\tstatus TEXT NOT NULL, \n"
        "\trun_at TEXT NOT NULL, \n"
        "\tlocked_until TEXT, \n"
        "\tlock_token TEXT, \n"
        "\tretries INTEGER NOT NULL, \n"
        "\tmax_retries INTEGER NOT NULL, \n"
        "\tlast_error TEXT, \n"
        "\tcreated TEXT NOT NULL, \n"
        "\tupdated TEXT NOT NULL, \n"
        "\tPRIMARY KEY (id), \n"
        "\tCONSTRAINT jobs_status_known CHECK"
        " (status IN ('pending', 'processing', 'completed', 'failed'))\n"
        ")"
    ),
    "CREATE INDEX jobs_created_idx ON jobs (created, id)",
    "CREATE INDEX jobs_claim_idx ON jobs (status, run_at, id)",
    (
        "CREATE TABLE jobs_schema (\n"
        "\tcomponent TEXT NOT NULL, \n"
        "\tversion INTEGER NOT NULL, \n"
        "\tPRIMARY KEY (component)\n"
        ")"
    ),
)

#: The `jobs` table of step 3: step 2's with `cancel_requested` (after `last_error`,
#: where the job schema declares it) and 'cancelled' in the status CHECK. Frozen.
V3_JOBS: Final = (
    "id TEXT NOT NULL, topic TEXT NOT NULL, payload TEXT NOT NULL, status TEXT NOT NULL,"
    " run_at TEXT NOT NULL, locked_until TEXT, lock_token TEXT, retries INTEGER NOT NULL,"
    " max_retries INTEGER NOT NULL, last_error TEXT, cancel_requested TEXT,"
    " created TEXT NOT NULL, updated TEXT NOT NULL, PRIMARY KEY (id),"
    " CONSTRAINT jobs_status_known CHECK"
    " (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled'))"
)


def _v3(connection: Connection) -> None:
    """Rebuild `jobs` as `V3_JOBS` (a CHECK cannot be altered), every old job with no
    cancel request. Copies every row once, in the migration's transaction: the file
    needs room for a second copy of the table while it runs, and writers wait."""
    rebuild_table(connection, "jobs", V3_JOBS, select={"cancel_requested": "NULL"})


#: The name of step 9, which adds the schedules table (tests find the step by it).
SCHEDULES_STEP_NAME: Final = (
    "schedules table: jobs_schedules (name, topic, timing, definition, paused, next_fire_at,"
    " last_fired_at, last_job_id, created, updated)"
)
#: `jobs_schedules`: one row per stored schedule (`jobs_core.Schedule`); the definition
#: as a JSON object (`jobs_core.schedule_definition`), the timing apart (an update keeps
#: `next_fire_at` when it is unchanged), times as the store's fixed-width UTC text.
#: Frozen.
SCHEDULES_LAYOUT: Final = (
    "CREATE TABLE jobs_schedules ("
    "name TEXT NOT NULL PRIMARY KEY,"
    " topic TEXT NOT NULL,"
    " timing TEXT NOT NULL,"
    " definition TEXT NOT NULL,"
    " paused INTEGER NOT NULL DEFAULT 0"
    " CONSTRAINT jobs_schedules_paused_flag CHECK (paused IN (0, 1)),"
    " next_fire_at TEXT NOT NULL,"
    " last_fired_at TEXT,"
    " last_job_id TEXT,"
    " created TEXT NOT NULL,"
    " updated TEXT NOT NULL)",
    # The firer's one query per tick: unpaused schedules whose slot came.
    "CREATE INDEX jobs_schedules_due_idx ON jobs_schedules (paused, next_fire_at)",
)


#: Every step, in order. The last one's number is the version this release writes.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "release 1 layout: jobs, its claim and created indexes", _run_all(*V1_LAYOUT)),
    Migration(
        2,
        "index (status, created, id); one row per applied step in jobs_schema_version",
        _run_all(
            # Files opened by a release that added it outside the numbered steps have it.
            "CREATE INDEX IF NOT EXISTS jobs_status_created_idx ON jobs (status, created, id)",
            f"CREATE TABLE {VERSION_TABLE} ("
            "version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied TEXT NOT NULL)",
        ),
    ),
    Migration(3, "status cancelled; column cancel_requested", _v3),
    Migration(
        4,
        "column snoozes",
        # A constant default: SQLite adds the column without touching a row.
        _run_all("ALTER TABLE jobs ADD COLUMN snoozes INTEGER NOT NULL DEFAULT 0"),
    ),
    Migration(
        5,
        "columns errors and result",
        # Constant defaults again: no row is touched; old jobs have no history, no result.
        _run_all(
            "ALTER TABLE jobs ADD COLUMN errors TEXT NOT NULL DEFAULT '[]'",
            "ALTER TABLE jobs ADD COLUMN result TEXT",
        ),
    ),
    Migration(
        6,
        "column priority; claim index (status, priority DESC, run_at, id)",
        _run_all(
            # A constant default and a column CHECK: ALTER TABLE adds both without a
            # rebuild or a rewritten row (SQLite 3.37+ reads every row once to check it).
            "ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0"
            " CONSTRAINT jobs_priority_range CHECK (priority BETWEEN -100 AND 100)",
            # The claim's order gains a leading `priority DESC`: the index it walks too.
            # Built in the migration's transaction, writers wait (about a second per
            # million rows).
            "DROP INDEX jobs_claim_idx",
            "CREATE INDEX jobs_claim_idx ON jobs (status, priority DESC, run_at, id)",
        ),
    ),
    Migration(
        7,
        "topics table: jobs_topics (topic, paused, max_running)",
        # A new table: no job row is touched. A topic without a row is unlimited and
        # claimable; the store keeps a row only while a setting differs from that.
        _run_all(
            "CREATE TABLE jobs_topics ("
            "topic TEXT NOT NULL PRIMARY KEY,"
            " paused INTEGER NOT NULL DEFAULT 0"
            " CONSTRAINT jobs_topics_paused_flag CHECK (paused IN (0, 1)),"
            " max_running INTEGER"
            " CONSTRAINT jobs_topics_max_running_range CHECK (max_running >= 0))"
        ),
    ),
    Migration(
        8,
        "column unique_key; partial unique index (topic, unique_key) of active jobs",
        _run_all(
            # A nullable column without a default: no row is touched, old jobs have no key.
            "ALTER TABLE jobs ADD COLUMN unique_key TEXT",
            # Holds one active job per (topic, key); the index has no old row to hold
            # (every unique_key is NULL), so it is built in no time. The predicate is
            # `_statements.HELD_KEY`, written out: a step never changes once released.
            "CREATE UNIQUE INDEX jobs_unique_key_idx ON jobs (topic, unique_key)"
            " WHERE unique_key IS NOT NULL AND status IN ('pending', 'processing')",
        ),
    ),
    # A new table: no job row is touched.
    Migration(9, SCHEDULES_STEP_NAME, _run_all(*SCHEDULES_LAYOUT)),
)


def steps() -> tuple[Migration, ...]:
    """`MIGRATIONS`, checked to be numbered 1, 2, 3... with no gap and no name twice."""
    check_migration_steps(MIGRATIONS)
    return MIGRATIONS


def latest_version() -> int:
    """The version this release writes: the number of its last step."""
    return steps()[-1].version


def read_version(fetch: Fetch) -> int | None:
    """The version a file holds (None: no jobs schema), read through `fetch(sql, params)
    -> rows`. Writes nothing; run it in a read transaction for a consistent answer."""
    tables = {
        row[0]
        for row in fetch(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
            (VERSION_TABLE, LEGACY_TABLE),
        )
    }
    found: list[int] = []
    if VERSION_TABLE in tables:
        found += [row[0] for row in fetch(f"SELECT max(version) FROM {VERSION_TABLE}", ())]  # noqa: S608
    if LEGACY_TABLE in tables:
        legacy = f"SELECT version FROM {LEGACY_TABLE} WHERE component = ?"  # noqa: S608
        found += [row[0] for row in fetch(legacy, (COMPONENT,))]
    known = [int(version) for version in found if version is not None]
    # The larger, so a file some newer release recorded in either place is never
    # taken for an older one.
    return max(known) if known else None


def fetcher(connection: Connection) -> Fetch:
    """`read_version`'s `fetch` on a SQLAlchemy connection."""
    return lambda sql, params: connection.exec_driver_sql(sql, tuple(params)).fetchall()


def migrate(connection: Connection, where: str) -> int:
    """Bring the file on `connection` to `latest_version()`, inside its current write
    transaction, and return that version. Steps the file has are skipped (at the
    latest version nothing is written). A newer file raises `SchemaTooNew` before
    anything is written; a `jobs` table no jobs store made raises `StoreError`."""
    fetch = fetcher(connection)
    current = read_version(fetch)
    latest = latest_version()
    if current is not None and current > latest:
        raise SchemaTooNew(where, current, latest)
    if current is None:
        _refuse_foreign_table(fetch, where)
    applied = format_time(datetime.now(UTC))
    for step in steps():
        if current is None or step.version > current:
            step.apply(connection)
            _record(connection, fetch, step.version, applied)
    return latest


def _refuse_foreign_table(fetch: Fetch, where: str) -> None:
    """A `jobs` table in a file with no version record is someone else's."""
    columns = [row[1] for row in fetch("SELECT * FROM pragma_table_info('jobs')", ())]
    if columns:
        raise StoreError(
            f"SQLite store {where}: the file already has a table named 'jobs' that is not"
            f" a jobs table (columns {sorted(columns)}, no {LEGACY_TABLE} record);"
            " use another database file"
        )


def _record(connection: Connection, fetch: Fetch, version: int, applied: str) -> None:
    """Note that `version` is applied: the legacy row, and (once the step that makes it
    has run) a row per step in `VERSION_TABLE`, filling in the steps applied before it
    existed (their `applied` is then the time they were first recorded)."""
    connection.exec_driver_sql(
        f"INSERT INTO {LEGACY_TABLE} (component, version) VALUES (?, ?)"  # noqa: S608
        " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
        (COMPONENT, version),
    )
    if not fetch("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (VERSION_TABLE,)):
        return
    recorded = {row[0] for row in fetch(f"SELECT version FROM {VERSION_TABLE}", ())}  # noqa: S608
    for step in steps():
        if step.version <= version and step.version not in recorded:
            connection.exec_driver_sql(
                f"INSERT INTO {VERSION_TABLE} (version, name, applied) VALUES (?, ?, ?)",  # noqa: S608
                (step.version, step.name, applied),
            )


def rebuild_table(
    connection: Connection,
    table: str,
    definition: str,
    *,
    select: Mapping[str, str] | None = None,
) -> None:
    """Give `table` a new definition, keeping its rows, indexes and triggers: SQLite's
    way to change what ALTER TABLE cannot (a CHECK, a column's type or constraints).

    `definition` is what goes between the parentheses of CREATE TABLE (columns and
    table constraints), written out literally in the step. Each column of the new table
    is filled from the old column of the same name, or from the SQL expression over the
    old row given for it in `select`. Runs in the migration's transaction: the new table
    is created under a scratch name, the rows copied, the old table dropped, the new one
    renamed, and the old indexes and triggers created again from their stored SQL.

    Foreign keys: `PRAGMA foreign_keys` cannot be switched off inside a transaction,
    and the store's connections have it on, so dropping a table other tables reference
    would cascade into them or fail. The store's tables have no foreign keys; a table
    referenced by another is refused (`StoreError`) rather than risk that. A new
    definition that adds foreign keys is checked (`PRAGMA foreign_key_check`) before the
    transaction can commit. Views naming the table are not rebuilt (the store has none).
    """
    fetch = fetcher(connection)
    referencing = [
        name
        for (name,) in fetch("SELECT name FROM sqlite_master WHERE type = 'table'", ())
        if any(
            row[2] == table for row in fetch("SELECT * FROM pragma_foreign_key_list(?)", (name,))
        )
    ]
    if referencing:
        raise StoreError(
            f"cannot rebuild table {table!r}: tables {sorted(referencing)} reference it"
        )
    scratch = f"{table}__rebuild"
    old_columns = [row[1] for row in fetch("SELECT * FROM pragma_table_info(?)", (table,))]
    kept = [
        row[0]
        for row in fetch(
            "SELECT sql FROM sqlite_master"
            " WHERE tbl_name = ? AND type IN ('index', 'trigger') AND sql IS NOT NULL",
            (table,),
        )
    ]
    connection.exec_driver_sql(f'CREATE TABLE "{scratch}" ({definition})')
    new_columns = [row[1] for row in fetch("SELECT * FROM pragma_table_info(?)", (scratch,))]
    sources = dict(select or {})
    unknown = set(sources) - set(new_columns)
    missing = [c for c in new_columns if c not in sources and c not in old_columns]
    if unknown or missing:
        raise StoreError(
            f"cannot rebuild table {table!r}: no source for new columns {missing},"
            f" and select names columns the new table lacks: {sorted(unknown)}"
        )
    targets = ", ".join(f'"{c}"' for c in new_columns)
    values = ", ".join(sources.get(c, f'"{c}"') for c in new_columns)
    copy = f'INSERT INTO "{scratch}" ({targets}) SELECT {values} FROM "{table}"'  # noqa: S608
    connection.exec_driver_sql(copy)
    connection.exec_driver_sql(f'DROP TABLE "{table}"')
    connection.exec_driver_sql(f'ALTER TABLE "{scratch}" RENAME TO "{table}"')
    for statement in kept:
        connection.exec_driver_sql(statement)
    problems = fetch("SELECT * FROM pragma_foreign_key_check(?)", (table,))
    if problems:
        raise StoreError(f"rebuilt table {table!r} breaks its foreign keys: {problems[:5]}")
