"""Numbered schema steps: a v1 database is upgraded in place, and a newer one refused.

The v1 database is built from `fixtures/v1_schema.sql`, the first release's DDL as it
shipped (never from today's code), with jobs in every status written as raw rows.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
import sqlalchemy as sa
from psycopg.types.json import Jsonb
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs_core import (
    AttemptError,
    Job,
    JobStatus,
    MigratableStore,
    SchemaBehind,
    SchemaTooNew,
    SchemaVersion,
    errors_to_json,
)
from jobs_core.testing.contract import LEASE, make_job, make_schedule
from jobs_core.testing.upgrade import (
    RELEASE_1,
    UPGRADE_NOW,
    check_unique_keys,
    check_upgraded,
    jobs_in_every_status,
)
from jobs_postgres import SCHEMA_VERSION, PostgresStore
from jobs_postgres import _migrations as migrations
from jobs_postgres._migrations import SCHEDULES_STEP_NAME
from jobs_postgres._rows import to_row
from jobs_postgres._schema import Schema
from tests.pg_admin import admin_connect, throwaway_database
from tests.postgres.procs import spawn, wait_for

Conn = psycopg.Connection[tuple[Any, ...]]
V1_DDL = (Path(__file__).parent / "fixtures" / "v1_schema.sql").read_text()
LATER = UPGRADE_NOW + timedelta(seconds=1)
#: The jobs table's columns in the v1 layout, in its order.
V1_COLUMNS = (
    "id, topic, payload, status, run_at, locked_until, lock_token, retries, max_retries,"
    " last_error, created, updated"
)


@pytest.fixture
def url() -> Iterator[str]:
    """A fresh, empty database."""
    with throwaway_database("jobs_migrate") as url:
        yield url


@pytest.fixture
def db(url: str) -> Iterator[Conn]:
    with admin_connect(url) as conn:
        yield conn


def v1_jobs() -> list[Job]:
    """The kit's upgrade jobs that the v1 layout can hold."""
    return jobs_in_every_status(layout=RELEASE_1)


def create_v1(db: Conn, table: str = "jobs", schema: str | None = None) -> None:
    """The fixture's v1 layout (for `table` in `schema`), as the first release made it."""
    if schema is not None:
        db.execute(f'CREATE SCHEMA "{schema}"')
        db.execute(f'SET search_path TO "{schema}"')
    db.execute(V1_DDL.replace("jobs", table))
    db.execute("RESET search_path")


def write_v1_rows(db: Conn, jobs: Sequence[Job], relation: str = "jobs") -> None:
    """`jobs` as rows of the v1 layout, written with plain SQL."""
    for job in jobs:
        db.execute(
            f"INSERT INTO {relation} ({V1_COLUMNS})"
            " VALUES (%s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                job.id,
                job.topic,
                json.dumps(job.payload),
                job.status.value,
                job.run_at,
                job.locked_until,
                job.lock_token,
                job.retries,
                job.max_retries,
                job.last_error,
                job.created,
                job.updated,
            ),
        )


def describe(db: Conn, schema: str = "public") -> dict[str, Any]:
    """Every table and sequence of `schema` as the catalog has it: columns (type,
    nullability, default), constraints, indexes; names of `schema` left out."""
    found: dict[str, Any] = {}
    relations = db.execute(
        "SELECT oid, relname, relkind FROM pg_class WHERE relnamespace = %s::regnamespace"
        " AND relkind IN ('r', 'S') ORDER BY relname",
        (schema,),
    ).fetchall()
    for oid, name, kind in relations:
        columns = db.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
            " pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a LEFT JOIN pg_attrdef d"
            " ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
            " WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (oid,),
        ).fetchall()
        constraints = db.execute(
            "SELECT conname, contype, pg_get_constraintdef(oid), convalidated"
            " FROM pg_constraint WHERE conrelid = %s ORDER BY conname",
            (oid,),
        ).fetchall()
        indexes = db.execute(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s ORDER BY 1",
            (oid,),
        ).fetchall()
        found[name] = {
            "kind": kind,
            "columns": columns,
            "constraints": constraints,
            "indexes": indexes,
        }
    # Leave the schema's own name out of index definitions and defaults.
    text = json.dumps(found).replace(f'"{schema}".', "")
    return dict(json.loads(re.sub(rf"\b{re.escape(schema)}\.", "", text)))


def versions(db: Conn, relation: str = "jobs_schema_version") -> list[tuple[Any, ...]]:
    return db.execute(f"SELECT version, name FROM {relation} ORDER BY version").fetchall()


def snapshot(db: Conn, schema: str = "public", table: str = "jobs") -> tuple[object, ...]:
    """Layout and every row of the jobs table and its version table."""
    rows = db.execute(f'SELECT * FROM "{schema}"."{table}" ORDER BY id').fetchall()
    kept = db.execute(f'SELECT * FROM "{schema}"."{table}_schema_version" ORDER BY 1').fetchall()
    return describe(db, schema), rows, kept


async def test_the_fixture_is_the_layout_of_step_1(
    url: str, db: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step 1 lays out exactly what the first release did (the fixture, frozen)."""
    create_v1(db)
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
    store = PostgresStore(url, schema="by_step_1")
    try:
        assert await store.migrate() == SchemaVersion(current=1, latest=1)
    finally:
        await store.close()
    assert describe(db, "by_step_1") == describe(db, "public")
    assert db.execute("SELECT version FROM by_step_1.jobs_schema_version").fetchall() == [(1,)]


def columns_by_name(description: dict[str, Any]) -> dict[str, Any]:
    """`describe`'s answer with each table's columns keyed by name instead of listed in
    table order (each column's type and nullability kept exactly, and its default, but
    for the jobs table's: see the test below)."""
    return {
        name: {
            **table,
            "columns": {
                column[0]: column[1:3] if name == "jobs" else column[1:]
                for column in table["columns"]
            },
        }
        for name, table in description.items()
    }


async def test_a_migrated_table_is_what_the_derived_table_describes(url: str, db: Conn) -> None:
    """Steps 1..N give the columns, types, nullability, defaults, CHECKs and indexes that
    today's `sa.Table` (built from the core's job schema) declares: the two cannot drift.

    Columns are compared by name, not position: a step adding a field appends its column
    (ALTER TABLE ADD COLUMN) while the declared table puts it where the model declares
    it, and the store never depends on the order, as every statement names its columns.
    For the same reason the jobs table's column defaults are not compared: a step adding
    a NOT NULL column gives it a DEFAULT to fill the rows already there, and no statement
    relies on one.
    """
    store = PostgresStore(url, schema="migrated")
    try:
        assert await store.migrate() == SchemaVersion(current=SCHEMA_VERSION, latest=SCHEMA_VERSION)
        declared = Schema("jobs", "declared")
        async with store.engine.begin() as conn:
            await conn.execute(sa.schema.CreateSchema("declared"))
            await conn.run_sync(declared.metadata.create_all)
    finally:
        await store.close()
    migrated = describe(db, "migrated")
    assert columns_by_name(migrated) == columns_by_name(describe(db, "declared"))
    assert set(migrated) == {"jobs", "jobs_schema_version", "jobs_topics", "jobs_schedules"}
    assert [c[0] for c in migrated["jobs_schema_version"]["columns"]] == [
        "version",
        "name",
        "applied",
    ]


async def test_a_v1_database_is_upgraded_and_every_job_reads_back_and_works(
    url: str, db: Conn
) -> None:
    create_v1(db)
    jobs = v1_jobs()
    write_v1_rows(db, jobs)
    store = PostgresStore(url)
    try:
        assert isinstance(store, MigratableStore)
        before = await store.schema_version()
        assert before == SchemaVersion(current=1, latest=SCHEMA_VERSION)
        assert before.behind
        assert versions_v1(db) == [(1,)]  # reading the version wrote nothing
        await check_upgraded(store, jobs, LATER)  # first use migrates
        assert await store.schema_version() == SchemaVersion(
            current=SCHEMA_VERSION, latest=SCHEMA_VERSION
        )
    finally:
        await store.close()
    assert versions(db) == [(step.version, step.name) for step in migrations.MIGRATIONS]
    indexes = {name for name, _ in describe(db)["jobs"]["indexes"]}
    assert "jobs_pending_topic_idx" in indexes
    assert "jobs_pending_idx" not in indexes
    # Releases before the numbered steps read max(version) and refuse anything above 1.
    assert db.execute("SELECT max(version) FROM jobs_schema_version").fetchone() == (
        SCHEMA_VERSION,
    )


def versions_v1(db: Conn) -> list[tuple[Any, ...]]:
    return db.execute("SELECT version FROM jobs_schema_version ORDER BY version").fetchall()


async def test_a_table_of_the_release_between_gets_the_same_layout(url: str, db: Conn) -> None:
    """The unnumbered release after v1 recorded version 1 with the per-topic index in
    place already: step 2 takes it as it is."""
    create_v1(db)
    db.execute(
        "CREATE INDEX jobs_pending_topic_idx ON jobs (topic, run_at, id) WHERE status = 'pending'"
    )
    db.execute("DROP INDEX jobs_pending_idx")
    jobs = v1_jobs()
    write_v1_rows(db, jobs)
    store = PostgresStore(url)
    fresh = PostgresStore(url, schema="fresh")
    try:
        await check_upgraded(store, jobs, LATER)
        await fresh.migrate()
    finally:
        await store.close()
        await fresh.close()
    assert describe(db) == describe(db, "fresh")


async def test_migrate_is_idempotent_and_schema_version_creates_nothing(url: str, db: Conn) -> None:
    store = PostgresStore(url)
    try:
        assert await store.schema_version() == SchemaVersion(current=None, latest=SCHEMA_VERSION)
        assert describe(db) == {}
        latest = SchemaVersion(current=SCHEMA_VERSION, latest=SCHEMA_VERSION)
        assert await store.migrate() == latest
        once = snapshot(db)
        assert await store.migrate() == latest
        assert await store.count_by_status() == dict.fromkeys(JobStatus, 0)
        assert snapshot(db) == once  # same rows, `applied` times included
    finally:
        await store.close()


async def test_a_newer_schema_is_refused_without_writing_or_locking(url: str, db: Conn) -> None:
    create_v1(db)
    write_v1_rows(db, v1_jobs())
    setup = PostgresStore(url)
    try:
        await setup.migrate()
    finally:
        await setup.close()
    db.execute("INSERT INTO jobs_schema_version (version, name) VALUES (99, 'from the future')")
    before = snapshot(db)
    # Holding the DDL lock: a store that tried to take it would wait here for ever.
    db.execute("SELECT pg_advisory_lock(%s)", (Schema("jobs").lock_key,))
    for create_schema in (True, False):
        store = PostgresStore(url, create_schema=create_schema)
        try:
            version = await asyncio.wait_for(store.schema_version(), 30)
            assert version == SchemaVersion(current=99, latest=SCHEMA_VERSION)
            assert version.ahead
            with pytest.raises(SchemaTooNew, match="version 99, newer than this release") as info:
                await asyncio.wait_for(store.count_by_status(), 30)
            assert (info.value.found, info.value.known) == (99, SCHEMA_VERSION)
            assert "table jobs of postgresql://" in str(info.value)
            with pytest.raises(SchemaTooNew):
                await asyncio.wait_for(store.migrate(), 30)
            with pytest.raises(SchemaTooNew):
                await asyncio.wait_for(store.insert(v1_jobs()[:1]), 30)
        finally:
            await store.close()
    db.execute("SELECT pg_advisory_unlock_all()")
    assert snapshot(db) == before


async def test_opened_without_migrating_an_older_schema_raises_schema_behind(
    url: str, db: Conn
) -> None:
    create_v1(db)
    jobs = v1_jobs()
    write_v1_rows(db, jobs)
    before = snapshot(db)
    store = PostgresStore(url, create_schema=False)
    try:
        behind = f"version 1, older than this release's {SCHEMA_VERSION}"
        with pytest.raises(SchemaBehind, match=behind) as info:
            await store.get(jobs[0].id)
        assert (info.value.found, info.value.latest) == (1, SCHEMA_VERSION)
        assert snapshot(db) == before
        # `migrate()` is the operator's way through, whatever create_schema says.
        assert await store.migrate() == SchemaVersion(current=SCHEMA_VERSION, latest=SCHEMA_VERSION)
        await check_upgraded(store, jobs, LATER)
    finally:
        await store.close()


async def test_the_latest_schema_opens_without_taking_the_lock(url: str, db: Conn) -> None:
    setup = PostgresStore(url)
    try:
        await setup.migrate()
    finally:
        await setup.close()
    db.execute("SELECT pg_advisory_lock(%s)", (Schema("jobs").lock_key,))
    for create_schema in (True, False):
        store = PostgresStore(url, create_schema=create_schema)
        try:
            assert await asyncio.wait_for(store.count_by_status(), 30) == dict.fromkeys(
                JobStatus, 0
            )
        finally:
            await store.close()


async def test_connections_opening_one_v1_table_at_once_apply_each_step_once(
    url: str, db: Conn
) -> None:
    """Six stores (six connections) all find version 1 and queue on the lock; each
    re-reads the version under it, so the steps run once and every store succeeds."""
    create_v1(db)
    jobs = v1_jobs()
    write_v1_rows(db, jobs)
    db.execute("SELECT pg_advisory_lock(%s)", (Schema("jobs").lock_key,))
    stores = [PostgresStore(url) for _ in range(6)]
    try:
        opening = [asyncio.create_task(store.count_by_status()) for store in stores]
        async with asyncio.timeout(30):
            while db.execute(_WAITING).fetchone() != (6,):
                await asyncio.sleep(0.01)
        db.execute("SELECT pg_advisory_unlock_all()")
        counts = await asyncio.gather(*opening)
        assert all(sum(c.values()) == len(jobs) for c in counts)
        await check_upgraded(stores[0], jobs, LATER)
    finally:
        for store in stores:
            await store.close()
    assert [v for v, _ in versions(db)] == list(range(1, SCHEMA_VERSION + 1))


def test_processes_opening_one_v1_table_at_once_apply_each_step_once(url: str, db: Conn) -> None:
    """As above, with four worker processes queued on the lock together."""
    create_v1(db)
    jobs = v1_jobs()
    write_v1_rows(db, jobs)
    db.execute("SELECT pg_advisory_lock(%s)", (Schema("jobs").lock_key,))
    procs = [spawn({"store_url": f"{url}?table=jobs", "mode": "init"}) for _ in range(4)]
    try:
        wait_for(db, _WAITING, 4, timeout=120)
    finally:
        db.execute("SELECT pg_advisory_unlock_all()")
    assert [proc.wait(120) for proc in procs] == [0] * 4
    assert [v for v, _ in versions(db)] == list(range(1, SCHEMA_VERSION + 1))
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (len(jobs),)


_WAITING = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"


async def _allow_archived(conn: AsyncConnection, schema: Schema) -> None:
    statuses = [*(status.value for status in JobStatus), "archived"]
    await migrations.replace_status_check(conn, schema, statuses)


async def test_a_step_replacing_the_status_check_keeps_rows_and_admits_the_new_status(
    url: str, db: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = migrations.Migration(SCHEMA_VERSION + 1, "archived status", _allow_archived)
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, step))
    create_v1(db)
    jobs = v1_jobs()
    write_v1_rows(db, jobs)
    store = PostgresStore(url)
    archived = attrs.evolve(jobs[0], id="00000000-0000-4000-8000-00000000c0de")
    try:
        await check_upgraded(store, jobs, LATER)
        top = SCHEMA_VERSION + 1
        assert await store.schema_version() == SchemaVersion(current=top, latest=top)
        await store.insert([archived])  # in the migrated layout, by today's code
    finally:
        await store.close()
    assert versions(db)[-1] == (SCHEMA_VERSION + 1, "archived status")
    db.execute("UPDATE jobs SET status = 'archived' WHERE id = %s", (archived.id,))
    read = "SELECT status FROM jobs WHERE id = %s"
    assert db.execute(read, (archived.id,)).fetchone() == ("archived",)
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("UPDATE jobs SET status = 'paused' WHERE id = %s", (archived.id,))
    check = describe(db)["jobs"]["constraints"]
    assert ["jobs_status_check", "c", _check_of(*JobStatus, "archived"), True] in check


def _check_of(*statuses: str) -> str:
    """The status CHECK allowing `statuses`, as `pg_get_constraintdef` shows it."""
    listed = ", ".join(f"'{status}'::text" for status in statuses)
    return f"CHECK ((status = ANY (ARRAY[{listed}])))"


async def _at_step_2(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lay out the default table by steps 1 and 2 only (the layout before step 3)."""
    await _at_step(url, monkeypatch, 2)


async def _at_step(url: str, monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Lay out the default table by steps 1 to `step` only."""
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:step])
        store = PostgresStore(url)
        try:
            assert await store.migrate() == SchemaVersion(current=step, latest=step)
        finally:
            await store.close()


async def test_a_step_2_table_is_migrated_to_3_and_every_job_reads_back(
    url: str, db: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step 3 adds `cancel_requested` (null in every old row) and admits `cancelled`:
    every job of every status step 2 allows reads back identical, the table is then a
    new one's, and it holds cancelled jobs and jobs asked to cancel."""
    await _at_step_2(url, monkeypatch)
    jobs = v1_jobs()
    write_v1_rows(db, jobs)  # step 2 has release 1's columns and statuses
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("UPDATE jobs SET status = 'cancelled' WHERE id = %s", (jobs[0].id,))
    rows = db.execute(f"SELECT {V1_COLUMNS} FROM jobs ORDER BY id").fetchall()
    store = PostgresStore(url)
    fresh = PostgresStore(url, schema="fresh")
    try:
        assert await store.schema_version() == SchemaVersion(current=2, latest=SCHEMA_VERSION)
        for job in jobs:
            stored = await store.get(job.id)
            assert stored == job
            assert stored.cancel_requested is None
        assert await store.schema_version() == SchemaVersion(
            current=SCHEMA_VERSION, latest=SCHEMA_VERSION
        )
        await fresh.migrate()
    finally:
        await store.close()
        await fresh.close()
    assert [v for v, _ in versions(db)] == list(range(1, SCHEMA_VERSION + 1))
    after = db.execute(f"SELECT {V1_COLUMNS}, cancel_requested FROM jobs ORDER BY id")
    assert after.fetchall() == [(*row, None) for row in rows]
    assert describe(db) == describe(db, "fresh")
    check = describe(db)["jobs"]["constraints"]
    assert ["jobs_status_check", "c", _check_of(*JobStatus), True] in check

    known = {job.id for job in jobs}
    added = [job for job in jobs_in_every_status() if job.id not in known]
    assert JobStatus.CANCELLED in {job.status for job in added}
    assert any(job.cancel_requested is not None for job in added)
    store = PostgresStore(url)
    try:
        await store.insert(added)
        await check_upgraded(store, [*jobs, *added], LATER)
    finally:
        await store.close()


async def test_a_table_with_its_own_name_and_schema_is_upgraded(url: str, db: Conn) -> None:
    create_v1(db, table="work", schema="queue")
    jobs = v1_jobs()
    write_v1_rows(db, jobs, relation="queue.work")
    store = PostgresStore(url, table="work", schema="queue")
    other = PostgresStore(url)  # the default table, elsewhere, is not touched
    nowhere = PostgresStore(url, table="work", schema="absent")
    try:
        assert await store.schema_version() == SchemaVersion(current=1, latest=SCHEMA_VERSION)
        missing = SchemaVersion(current=None, latest=SCHEMA_VERSION)
        assert await other.schema_version() == missing
        assert await nowhere.schema_version() == missing
        await check_upgraded(store, jobs, LATER)
    finally:
        await store.close()
        await other.close()
        await nowhere.close()
    assert [v for v, _ in versions(db, "queue.work_schema_version")] == list(
        range(1, SCHEMA_VERSION + 1)
    )
    assert db.execute("SELECT to_regnamespace('absent')").fetchone() == (None,)
    indexes = {name for name, _ in describe(db, "queue")["work"]["indexes"]}
    assert {"work_pending_topic_idx", "work_processing_idx"} <= indexes
    assert "work_pending_idx" not in indexes
    assert describe(db) == {}


async def test_a_step_3_table_is_migrated_to_4_and_every_job_reads_back(
    url: str, db: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step 4 adds `snoozes` (0 in every old row): every row of every status step 3
    allows (a cancelled one and one asked to cancel among them) reads back as it was."""
    await _at_step(url, monkeypatch, 2)
    jobs = v1_jobs()
    write_v1_rows(db, jobs)
    await _at_step(url, monkeypatch, 3)
    asked = next(job for job in jobs if job.status is JobStatus.PROCESSING)
    stopped = next(job for job in jobs if job.status is JobStatus.FAILED)
    at = LATER - timedelta(minutes=1)
    db.execute("UPDATE jobs SET cancel_requested = %s WHERE id = %s", (at, asked.id))
    db.execute("UPDATE jobs SET status = 'cancelled' WHERE id = %s", (stopped.id,))
    expected = {job.id: job for job in jobs}
    expected[asked.id] = attrs.evolve(asked, cancel_requested=at)
    expected[stopped.id] = attrs.evolve(stopped, status=JobStatus.CANCELLED)
    store = PostgresStore(url)
    try:
        assert await store.schema_version() == SchemaVersion(current=3, latest=SCHEMA_VERSION)
        for job in expected.values():
            stored = await store.get(job.id)
            assert stored == job
            assert stored.snoozes == 0
        assert await store.schema_version() == SchemaVersion(
            current=SCHEMA_VERSION, latest=SCHEMA_VERSION
        )
        await check_upgraded(store, list(expected.values()), LATER)
    finally:
        await store.close()
    assert [v for v, _ in versions(db)] == list(range(1, SCHEMA_VERSION + 1))


async def test_a_step_4_table_is_migrated_to_5_and_every_job_reads_back(
    url: str, db: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step 5 adds `errors` (`[]`: no recorded attempt) and `result` (null): every row of
    every status step 4 allows (a snoozed one among them) reads back as it was."""
    await _at_step(url, monkeypatch, 2)
    jobs = v1_jobs()
    write_v1_rows(db, jobs)
    await _at_step(url, monkeypatch, 4)
    snoozed = next(job for job in jobs if job.status is JobStatus.PENDING)
    stopped = next(job for job in jobs if job.status is JobStatus.FAILED)
    db.execute("UPDATE jobs SET snoozes = 4 WHERE id = %s", (snoozed.id,))
    db.execute("UPDATE jobs SET status = 'cancelled' WHERE id = %s", (stopped.id,))
    expected = {job.id: job for job in jobs}
    expected[snoozed.id] = attrs.evolve(snoozed, snoozes=4)
    expected[stopped.id] = attrs.evolve(stopped, status=JobStatus.CANCELLED)
    store = PostgresStore(url)
    try:
        assert await store.schema_version() == SchemaVersion(current=4, latest=SCHEMA_VERSION)
        for job in expected.values():
            stored = await store.get(job.id)
            assert stored == job
            assert (stored.errors, stored.result) == ((), None)
        assert await store.schema_version() == SchemaVersion(
            current=SCHEMA_VERSION, latest=SCHEMA_VERSION
        )
        await check_upgraded(store, list(expected.values()), LATER)
    finally:
        await store.close()
    assert [v for v, _ in versions(db)] == list(range(1, SCHEMA_VERSION + 1))


async def test_a_step_5_table_is_migrated_to_6_and_every_job_reads_back(
    url: str, db: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step 6 adds `priority` (0 in every old row; a CHECK keeps it in -100..100, no row
    rewritten) and rebuilds the per-topic claim index on (topic, priority DESC, run_at,
    id): every row of every status step 5 allows (snoozed, cancelled, with a history
    and a result among them) reads back as it was, and the claim then takes a higher
    priority first."""
    await _at_step(url, monkeypatch, 2)
    jobs = v1_jobs()
    write_v1_rows(db, jobs)
    await _at_step(url, monkeypatch, 5)
    snoozed = next(job for job in jobs if job.status is JobStatus.PENDING)
    stopped = next(job for job in jobs if job.status is JobStatus.FAILED)
    done = next(job for job in jobs if job.status is JobStatus.COMPLETED)
    history = (AttemptError(attempt=1, at=UPGRADE_NOW, error="boom", traceback="Traceback"),)
    before = db.execute("SELECT pg_relation_filenode('jobs')").fetchone()
    db.execute("UPDATE jobs SET snoozes = 4 WHERE id = %s", (snoozed.id,))
    db.execute("UPDATE jobs SET status = 'cancelled' WHERE id = %s", (stopped.id,))
    db.execute(
        "UPDATE jobs SET errors = %s, result = %s WHERE id = %s",
        (Jsonb(errors_to_json(history)), Jsonb({"sent": [1, "é"]}), done.id),
    )
    expected = {job.id: job for job in jobs}
    expected[snoozed.id] = attrs.evolve(snoozed, snoozes=4)
    expected[stopped.id] = attrs.evolve(stopped, status=JobStatus.CANCELLED)
    expected[done.id] = attrs.evolve(done, errors=history, result={"sent": [1, "é"]})
    store = PostgresStore(url)
    try:
        assert await store.schema_version() == SchemaVersion(current=5, latest=SCHEMA_VERSION)
        for job in expected.values():
            stored = await store.get(job.id)
            assert stored == job
            assert stored.priority == 0
        assert await store.schema_version() == SchemaVersion(
            current=SCHEMA_VERSION, latest=SCHEMA_VERSION
        )
        await check_upgraded(store, list(expected.values()), LATER)
        low = make_job(topic="after", run_at=LATER - timedelta(hours=1))
        high = make_job(topic="after", run_at=LATER, priority=9)
        await store.insert([low, high])
        (first,) = await store.claim(topics=["after"], now=LATER, lease=LEASE, limit=1)
        assert (first.id, first.priority) == (high.id, 9)
    finally:
        await store.close()
    assert [v for v, _ in versions(db)] == list(range(1, SCHEMA_VERSION + 1))
    assert db.execute("SELECT pg_relation_filenode('jobs')").fetchone() == before
    row = db.execute("SELECT pg_get_indexdef('jobs_pending_topic_idx'::regclass)").fetchone()
    assert row is not None
    (index,) = row
    assert "(topic, priority DESC, run_at, id) WHERE (status = 'pending'::text)" in index
    for out_of_range in (-101, 101):
        with pytest.raises(psycopg.errors.CheckViolation, match="jobs_priority_check"):
            db.execute("UPDATE jobs SET priority = %s WHERE id = %s", (out_of_range, low.id))
    db.execute("UPDATE jobs SET priority = -100 WHERE id = %s", (low.id,))


async def test_a_step_6_table_is_migrated_to_7_and_gets_an_empty_topics_table(
    url: str, db: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step 7 creates `jobs_topics` (empty: every topic unlimited and claimable) and
    touches no job row: every row of every status step 6 allows reads back as it was;
    then a pause and a limit are stored, checked and obeyed by the claim."""
    jobs = jobs_in_every_status()
    assert {job.status for job in jobs} == set(JobStatus)
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:6])
        store = PostgresStore(url)
        try:
            assert await store.migrate() == SchemaVersion(current=6, latest=6)
            await _insert_before_step_8(store, jobs)
        finally:
            await store.close()
    assert db.execute("SELECT to_regclass('jobs_topics')").fetchone() == (None,)
    before = db.execute("SELECT pg_relation_filenode('jobs')").fetchone()
    store = PostgresStore(url)
    try:
        assert await store.schema_version() == SchemaVersion(current=6, latest=SCHEMA_VERSION)
        for job in jobs:
            assert await store.get(job.id) == job
        assert await store.schema_version() == SchemaVersion(
            current=SCHEMA_VERSION, latest=SCHEMA_VERSION
        )
        infos = await store.topics()
        assert not any(info.paused or info.max_running is not None for info in infos)
        assert sum(sum(info.counts.values()) for info in infos) == len(jobs)
        await check_upgraded(store, jobs, LATER)
        await store.insert([make_job(topic="after", run_at=LATER) for _ in range(3)])
        await store.set_paused("after", True)
        assert await store.claim(topics=["after"], now=LATER, lease=LEASE, limit=5) == []
        await store.set_paused("after", False)
        await store.set_max_running("after", 2)
        assert len(await store.claim(topics=["after"], now=LATER, lease=LEASE, limit=5)) == 2
    finally:
        await store.close()
    assert [v for v, _ in versions(db)] == list(range(1, SCHEMA_VERSION + 1))
    assert db.execute("SELECT pg_relation_filenode('jobs')").fetchone() == before
    assert db.execute("SELECT * FROM jobs_topics").fetchall() == [("after", False, 2)]
    with pytest.raises(psycopg.errors.CheckViolation, match="jobs_topics_max_running_check"):
        db.execute("UPDATE jobs_topics SET max_running = -1")


async def _insert_before_step_8(store: PostgresStore, jobs: Sequence[Job]) -> None:
    """Insert `jobs` into a table older than step 8 (no `unique_key` column)."""
    assert all(job.unique_key is None for job in jobs)
    rows = [{k: v for k, v in to_row(job).items() if k != "unique_key"} for job in jobs]
    async with store.engine.begin() as conn:
        await conn.execute(Schema().jobs.insert(), rows)


async def test_a_step_7_table_is_migrated_to_8_and_holds_unique_keys(
    url: str, db: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step 8 adds `unique_key` (NULL in every old row: no row rewritten, the table keeps
    its file) and the partial unique index of active keys: every job of every status
    reads back as it was and still works; then keys are held (a duplicate answers the
    holder, a requeue over a held key raises), and the index refuses a second active
    row even written by hand."""
    jobs = jobs_in_every_status()
    assert {job.status for job in jobs} == set(JobStatus)
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:7])
        store = PostgresStore(url)
        try:
            assert await store.migrate() == SchemaVersion(current=7, latest=7)
            await _insert_before_step_8(store, jobs)
        finally:
            await store.close()
    before = db.execute("SELECT pg_relation_filenode('jobs')").fetchone()
    store = PostgresStore(url)
    try:
        assert await store.schema_version() == SchemaVersion(current=7, latest=SCHEMA_VERSION)
        for job in jobs:
            assert await store.get(job.id) == job
        assert await store.schema_version() == SchemaVersion(
            current=SCHEMA_VERSION, latest=SCHEMA_VERSION
        )
        await check_upgraded(store, jobs, LATER)
        await check_unique_keys(store, LATER)
    finally:
        await store.close()
    assert [v for v, _ in versions(db)] == list(range(1, SCHEMA_VERSION + 1))
    assert db.execute("SELECT pg_relation_filenode('jobs')").fetchone() == before
    held = db.execute("SELECT count(*) FROM jobs WHERE unique_key = 'k' AND status = 'pending'")
    assert held.fetchone() == (1,)
    with pytest.raises(psycopg.errors.UniqueViolation, match="jobs_unique_key_idx"):
        db.execute(
            "UPDATE jobs SET status = 'pending' WHERE unique_key = 'k' AND status = 'cancelled'"
        )


async def test_a_step_7_table_is_migrated_and_gets_an_empty_schedules_table(
    url: str, db: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The schedules step creates `jobs_schedules` (empty) and touches no job row:
    every row of every status reads back as it was; then a schedule is stored and
    fires its slot job once."""
    step = next(m.version for m in migrations.MIGRATIONS if m.name == SCHEDULES_STEP_NAME)
    jobs = jobs_in_every_status()
    assert {job.status for job in jobs} == set(JobStatus)
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[: step - 1])
        store = PostgresStore(url)
        try:
            assert await store.migrate() == SchemaVersion(current=step - 1, latest=step - 1)
            await store.insert(jobs)
        finally:
            await store.close()
    assert db.execute("SELECT to_regclass('jobs_schedules')").fetchone() == (None,)
    before = db.execute("SELECT pg_relation_filenode('jobs')").fetchone()
    store = PostgresStore(url)
    try:
        assert await store.schema_version() == SchemaVersion(
            current=step - 1, latest=SCHEMA_VERSION
        )
        for job in jobs:
            assert await store.get(job.id) == job
        assert await store.list_schedules() == []
        await check_upgraded(store, jobs, LATER)
        schedule = make_schedule(topic="after", next_fire_at=LATER)
        await store.save_schedule(schedule)
        slot_job = make_job(topic="after", run_at=LATER)
        won = [
            await store.fire_schedule(
                schedule.name,
                expected_next_fire_at=LATER,
                next_fire_at=LATER + timedelta(seconds=1),
                jobs=[slot_job],
            )
            for _ in range(2)
        ]
        assert won == [True, False]
        assert await store.get(slot_job.id) == slot_job
    finally:
        await store.close()
    assert [v for v, _ in versions(db)] == list(range(1, SCHEMA_VERSION + 1))
    assert db.execute("SELECT pg_relation_filenode('jobs')").fetchone() == before
    assert db.execute("SELECT name, paused, last_job_id FROM jobs_schedules").fetchall() == [
        ("nightly", False, slot_job.id)
    ]
