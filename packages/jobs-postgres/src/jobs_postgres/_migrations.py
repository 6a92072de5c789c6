"""The numbered steps (`MIGRATIONS`) that build and upgrade a jobs table, and their runner.

A fresh database runs every step from 1, an older one the steps it lacks: one path, so
a new table is laid out exactly as an upgraded one. Each step is frozen once released
(literal DDL templated on the table's names, never generated from today's `sa.Table`,
which later steps change); `<table>_schema_version` gets one row per applied step.

Steps run in order, in one transaction, under a transaction-scoped advisory lock keyed
by the table's qualified name, so processes starting together apply each step once
(each reads the version again once it holds the lock). A
process that finds the latest step recorded does no DDL and takes no lock. One that
finds a step it does not know raises `SchemaTooNew` before writing anything; releases
before the numbered steps read `max(version)` too and refuse with their own error.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs_core import SchemaTooNew, SchemaVersion, check_migration_steps
from jobs_postgres._schema import Schema, quote, status_check

log = logging.getLogger("jobs_postgres")


class Migration(NamedTuple):
    """One numbered step: `apply` changes the table on the connection it is given, in
    the migration's transaction, and runs once per table."""

    version: int
    name: str
    apply: Callable[[AsyncConnection, Schema], Awaitable[None]]


async def _run(conn: AsyncConnection, statements: Iterable[str]) -> None:
    for statement in statements:
        await conn.execute(sa.text(statement))


def v1_layout(schema: Schema) -> list[str]:
    """The DDL of the first release's layout (jobs-postgres 0.1.0), as it shipped.

    Frozen: the claim index on `(run_at, id)`, and `version` a SERIAL (SQLAlchemy made
    the integer primary key autoincrement); step 2 changes both.
    """
    t = schema.name
    jobs = schema.sql(t)
    own_schema = [f"CREATE SCHEMA IF NOT EXISTS {quote(schema.schema)}"] if schema.schema else []
    return [
        *own_schema,
        f"CREATE TABLE {jobs} ("
        "id UUID NOT NULL, topic TEXT NOT NULL, payload JSONB NOT NULL, status TEXT NOT NULL,"
        " run_at TIMESTAMP WITH TIME ZONE NOT NULL, locked_until TIMESTAMP WITH TIME ZONE,"
        " lock_token TEXT, retries INTEGER NOT NULL, max_retries INTEGER NOT NULL,"
        " last_error TEXT, created TIMESTAMP WITH TIME ZONE NOT NULL,"
        " updated TIMESTAMP WITH TIME ZONE NOT NULL,"
        " PRIMARY KEY (id),"
        f" CONSTRAINT {quote(t + '_status_check')} CHECK"
        " (status IN ('pending', 'processing', 'completed', 'failed')),"
        f" CONSTRAINT {quote(t + '_lock_check')} CHECK"
        " ((status = 'processing') = (lock_token IS NOT NULL AND locked_until IS NOT NULL)))",
        f"CREATE INDEX {quote(t + '_pending_idx')} ON {jobs} (run_at, id) WHERE status = 'pending'",
        f"CREATE INDEX {quote(t + '_processing_idx')} ON {jobs} (locked_until, id)"
        " WHERE status = 'processing'",
        f"CREATE INDEX {quote(t + '_created_idx')} ON {jobs} (created, id)",
        f"CREATE INDEX {quote(t + '_topic_created_idx')} ON {jobs} (topic, created, id)",
        f"CREATE TABLE {schema.sql(t + '_schema_version')} (version SERIAL NOT NULL,"
        " applied TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, PRIMARY KEY (version))",
    ]


async def _v1(conn: AsyncConnection, schema: Schema) -> None:
    await _run(conn, v1_layout(schema))


async def _v2(conn: AsyncConnection, schema: Schema) -> None:
    """The per-topic claim index in, the `(run_at, id)` one out; the version table in
    the shape every store shares: `(version INTEGER PRIMARY KEY, name TEXT NOT NULL,
    applied TIMESTAMPTZ NOT NULL DEFAULT now())`.

    Idempotent for the index: tables of the unnumbered release between 1 and 2 have it.
    Plain `CREATE INDEX` (not CONCURRENTLY: it runs inside the migration's transaction),
    so writers wait while it is built: seconds per million pending jobs. The version
    table (a row or two) is rebuilt rather than altered, for its column order and to
    lose v1's SERIAL.
    """
    t = schema.name
    versions = schema.sql(t + "_schema_version")
    read = f"SELECT version, applied FROM {versions}"  # noqa: S608
    applied = (await conn.execute(sa.text(read))).all()
    await _run(
        conn,
        [
            f"CREATE INDEX IF NOT EXISTS {quote(t + '_pending_topic_idx')}"
            f" ON {schema.sql(t)} (topic, run_at, id) WHERE status = 'pending'",
            f"DROP INDEX IF EXISTS {schema.sql(t + '_pending_idx')}",
            f"DROP TABLE {versions}",
            f"CREATE TABLE {versions} (version INTEGER NOT NULL, name TEXT NOT NULL,"
            " applied TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, PRIMARY KEY (version))",
        ],
    )
    insert = f"INSERT INTO {versions} (version, name, applied) VALUES (:v, :n, :at)"  # noqa: S608
    for version, when in applied:
        row = {"v": version, "n": _V1_NAMES.get(version, f"step {version}"), "at": when}
        await conn.execute(sa.text(insert), row)


#: The names of the steps a v1 version table can hold (step 2 writes them in).
_V1_NAMES: Final = {1: "v1 layout"}


#: The statuses step 3's CHECK allows. Frozen: a later status is a later step's.
_V3_STATUSES: Final = ("pending", "processing", "completed", "failed", "cancelled")


async def _v3(conn: AsyncConnection, schema: Schema) -> None:
    """The column `cancel_requested` and the status `cancelled`.

    The column is nullable with no default, so adding it rewrites no row (old jobs read
    it as null: never asked to cancel). The new CHECK reads every row once, under the
    table's exclusive lock (see `replace_status_check`).
    """
    await _run(
        conn,
        [
            f"ALTER TABLE {schema.sql(schema.name)}"
            " ADD COLUMN cancel_requested TIMESTAMP WITH TIME ZONE"
        ],
    )
    await replace_status_check(conn, schema, _V3_STATUSES)


async def _v4(conn: AsyncConnection, schema: Schema) -> None:
    """The column `snoozes`, 0 in every existing row (a constant default: PostgreSQL
    records it in the catalog and rewrites no row)."""
    table = schema.sql(schema.name)
    await _run(conn, [f"ALTER TABLE {table} ADD COLUMN snoozes INTEGER NOT NULL DEFAULT 0"])


async def _v5(conn: AsyncConnection, schema: Schema) -> None:
    """The columns `errors` (the attempt history, `[]` in every existing row: a constant
    default, so no row is rewritten) and `result` (nullable: no old job has one)."""
    table = schema.sql(schema.name)
    await _run(
        conn,
        [
            f"ALTER TABLE {table} ADD COLUMN errors JSONB NOT NULL DEFAULT '[]'::jsonb",
            f"ALTER TABLE {table} ADD COLUMN result JSONB",
        ],
    )


async def _v6(conn: AsyncConnection, schema: Schema) -> None:
    """The column `priority` (0 in every existing row: a constant default, so no row is
    rewritten), with its range CHECK, and the per-topic claim index rebuilt on
    `(topic, priority DESC, run_at, id) WHERE status = 'pending'`.

    The CHECK reads every row once under the table's lock (no rewrite: about 0.1 s per
    million rows); the index is built in the migration's transaction, so writers wait
    for it (seconds per million pending jobs, as step 2's).
    """
    t = schema.name
    table = schema.sql(t)
    await _run(
        conn,
        [
            f"ALTER TABLE {table} ADD COLUMN priority INTEGER NOT NULL DEFAULT 0"
            f" CONSTRAINT {quote(t + '_priority_check')} CHECK (priority BETWEEN -100 AND 100)",
            f"DROP INDEX {schema.sql(t + '_pending_topic_idx')}",
            f"CREATE INDEX {quote(t + '_pending_topic_idx')}"
            f" ON {table} (topic, priority DESC, run_at, id) WHERE status = 'pending'",
        ],
    )


async def _v7(conn: AsyncConnection, schema: Schema) -> None:
    """The table `<table>_topics` of per-topic policies (`paused`, `max_running`): a
    new, empty table, so no job row is touched and every topic stays unlimited and
    claimable. The claim locks a limited topic's row to serialise its count."""
    t = schema.name + "_topics"
    await _run(
        conn,
        [
            f"CREATE TABLE {schema.sql(t)} ("
            "topic TEXT NOT NULL PRIMARY KEY,"
            " paused BOOLEAN NOT NULL DEFAULT false,"
            f" max_running INTEGER CONSTRAINT {quote(t + '_max_running_check')}"
            " CHECK (max_running >= 0))"
        ],
    )


async def _v8(conn: AsyncConnection, schema: Schema) -> None:
    """The column `unique_key` (nullable, no default: no row is rewritten, old jobs have
    no key) and the partial unique index `(topic, unique_key)` of active jobs, built in
    the migration's transaction (every existing key is NULL, so it holds no entry)."""
    t = schema.name
    table = schema.sql(t)
    await _run(
        conn,
        [
            f"ALTER TABLE {table} ADD COLUMN unique_key TEXT",
            f"CREATE UNIQUE INDEX {quote(t + '_unique_key_idx')} ON {table} (topic, unique_key)"
            " WHERE unique_key IS NOT NULL AND status IN ('pending', 'processing')",
        ],
    )


#: The name of step 9, which adds the schedules table (tests find the step by it).
SCHEDULES_STEP_NAME: Final = "schedules table (definition, next_fire_at, last firing)"


async def _schedules(conn: AsyncConnection, schema: Schema) -> None:
    """The table `<table>_schedules` of stored schedules (`jobs_core.Schedule`): a new,
    empty table, so no job row is touched. The definition is a JSON object
    (`jobs_core.schedule_definition`) in TEXT, read back exactly as written; `timing`
    apart, so an update can keep `next_fire_at` when it is unchanged. The firer's one
    query per tick walks the partial index of unpaused schedules by next slot."""
    t = schema.name + "_schedules"
    await _run(
        conn,
        [
            f"CREATE TABLE {schema.sql(t)} ("
            "name TEXT NOT NULL PRIMARY KEY,"
            " topic TEXT NOT NULL,"
            " timing TEXT NOT NULL,"
            " definition TEXT NOT NULL,"
            " paused BOOLEAN NOT NULL DEFAULT false,"
            " next_fire_at TIMESTAMP WITH TIME ZONE NOT NULL,"
            " last_fired_at TIMESTAMP WITH TIME ZONE,"
            " last_job_id TEXT,"
            " created TIMESTAMP WITH TIME ZONE NOT NULL,"
            " updated TIMESTAMP WITH TIME ZONE NOT NULL)",
            f"CREATE INDEX {quote(t + '_due_idx')} ON {schema.sql(t)} (next_fire_at)"
            " WHERE NOT paused",
        ],
    )


#: Every step, in order. The last one's number is the version this release writes.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "v1 layout", _v1),
    Migration(2, "per-topic claim index, named version rows", _v2),
    Migration(3, "status cancelled, column cancel_requested", _v3),
    Migration(4, "column snoozes", _v4),
    Migration(5, "columns errors and result", _v5),
    Migration(6, "column priority, claim index by priority", _v6),
    Migration(7, "topics table (paused, max_running)", _v7),
    Migration(8, "column unique_key, partial unique index of active keys", _v8),
    Migration(9, SCHEDULES_STEP_NAME, _schedules),
)


def steps() -> tuple[Migration, ...]:
    """`MIGRATIONS`, checked to be numbered 1, 2, 3... with no gap and no name twice."""
    check_migration_steps(MIGRATIONS)
    return MIGRATIONS


def latest_version() -> int:
    """The version this release writes: the number of its last step."""
    return steps()[-1].version


#: The latest schema version this release reads and writes; computing it checks
#: `MIGRATIONS` at import.
SCHEMA_VERSION: Final = latest_version()


async def replace_status_check(
    conn: AsyncConnection, schema: Schema, statuses: Iterable[str], column: str = "status"
) -> None:
    """The body of a step that changes the statuses: `column`'s CHECK then allows
    exactly `statuses` (the new step's `JobStatus` values, listed in the step).

    One `ALTER TABLE`, which checks every row against the new constraint while holding
    the table's lock. `NOT VALID` + `VALIDATE` would not shorten that here: the steps
    share one transaction, which keeps the `ALTER`'s exclusive lock until it commits.
    """
    name = quote(schema.status_check_name(column))
    await _run(
        conn,
        [
            f"ALTER TABLE {schema.sql(schema.name)} DROP CONSTRAINT IF EXISTS {name},"
            f" ADD CONSTRAINT {name} CHECK ({status_check(column, statuses)})"
        ],
    )


async def installed_version(conn: AsyncConnection, schema: Schema) -> int | None:
    """The highest recorded step, or None when there is no version table. Reads only."""
    versions = schema.sql(schema.name + "_schema_version")
    # Read from pg_class, not with to_regclass: name lookups go through the backend's
    # catalog caches, which a transaction that waited on the advisory lock (no relation
    # lock, so no invalidations taken in) may still hold stale, so it would miss a table
    # another process created meanwhile and run step 1 again. A catalog query reads a
    # fresh snapshot per statement.
    present = await conn.scalar(
        sa.text(
            "SELECT EXISTS (SELECT FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE c.relname = :name"
            " AND n.nspname = coalesce(:schema, current_schema()))"
        ),
        {"name": schema.name + "_schema_version", "schema": schema.schema},
    )
    if not present:
        return None
    found = await conn.scalar(sa.text(f"SELECT max(version) FROM {versions}"))  # noqa: S608
    return None if found is None else int(found)


def _refuse_newer(found: int | None, known: int, where: str) -> None:
    if found is not None and found > known:
        raise SchemaTooNew(where, found, known)


async def migrate(conn: AsyncConnection, schema: Schema, where: str) -> SchemaVersion:
    """Apply the steps the table lacks; `where` names the table in errors. Raises
    `SchemaTooNew`, having written nothing, if the table is newer than `MIGRATIONS`.

    `conn` must be outside a transaction: the version is read in a transaction of its
    own, which ends before the lock is awaited. A reader still holding its share lock
    on the version table while it waits would deadlock with the step that alters it.
    """
    migrations = steps()
    known = migrations[-1].version
    async with conn.begin():
        found = await installed_version(conn, schema)
    if found == known:
        return SchemaVersion(current=found, latest=known)
    _refuse_newer(found, known, where)
    async with conn.begin():
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(schema.lock_key)))
        found = await installed_version(conn, schema)
        _refuse_newer(found, known, where)
        versions = schema.sql(schema.name + "_schema_version")
        for step in migrations[found or 0 :]:
            await step.apply(conn, schema)
            # v1's version table has no `name` (step 2 adds it and names row 1).
            insert = (
                f"INSERT INTO {versions} (version) VALUES (:version)"  # noqa: S608
                if step.version == 1
                else f"INSERT INTO {versions} (version, name) VALUES (:version, :name)"  # noqa: S608
            )
            await conn.execute(sa.text(insert), {"version": step.version, "name": step.name})
            log.info(
                "jobs table %s: applied step %d (%s)", schema.qualified, step.version, step.name
            )
    return SchemaVersion(current=known, latest=known)
