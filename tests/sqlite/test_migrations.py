"""Numbered schema migrations: a file of release 1 (built here from its DDL, kept as a
fixture) is migrated by today's store and every job reads back and keeps working; a
new file gets exactly the layout `jobs_table` describes; a newer file, or an older one
opened without migrating, is refused without a write; several processes migrate one
file once; step 3 (the status 'cancelled', the column cancel_requested) keeps every
row of a step-2 file, and steps 4 to 6 (snoozes; errors and result; priority and the
claim index) every row of the file before; a table-rebuilding step adds a status and
keeps every row."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import attrs
import pytest
import sqlalchemy

from jobs_core import (
    AttemptError,
    Job,
    JobStatus,
    MigratableStore,
    SchemaBehind,
    SchemaTooNew,
    SchemaVersion,
    StoreError,
    errors_to_json,
    open_store,
)
from jobs_core.testing.contract import LEASE, make_job, make_schedule
from jobs_core.testing.upgrade import (
    RELEASE_1,
    UPGRADE_NOW,
    check_unique_keys,
    check_upgraded,
    jobs_in_every_status,
)
from jobs_sqlite import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Migration,
    SQLiteStore,
    _migrations,
    jobs_table,
    rebuild_table,
    version_table,
)
from jobs_sqlite._rows import COLUMNS, format_time, insert_values
from jobs_sqlite._schema import schedules_table, topics_table
from jobs_sqlite._statements import INSERT
from tests.sqlite import _harness as h

V1_SCHEMA = (Path(__file__).parent / "fixtures" / "v1_schema.sql").read_text()
V1_COLUMNS = (
    "id, topic, payload, status, run_at, locked_until, lock_token, retries, max_retries,"
    " last_error, created, updated"
)
LATEST = SchemaVersion(current=SCHEMA_VERSION, latest=SCHEMA_VERSION)
AFTER = UPGRADE_NOW + timedelta(seconds=1)


def v1_jobs(now: datetime = UPGRADE_NOW) -> list[Job]:
    """The kit's upgrade jobs that release 1's layout can hold."""
    return jobs_in_every_status(now, layout=RELEASE_1)


def v1_time(value: datetime | None) -> str | None:
    """A time as release 1 stored it."""
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def v1_row(job: Job) -> tuple[Any, ...]:
    """A job as a row of release 1 (JSON text payload, fixed-width UTC text times)."""
    payload = json.dumps(job.payload, ensure_ascii=False, separators=(",", ":"))
    return (
        job.id,
        job.topic,
        payload,
        job.status.value,
        v1_time(job.run_at),
        v1_time(job.locked_until),
        job.lock_token,
        job.retries,
        job.max_retries,
        job.last_error,
        v1_time(job.created),
        v1_time(job.updated),
    )


def build_v1_file(path: Path, jobs: list[Job]) -> None:
    """A file as release 1 left it: its DDL, WAL mode, and `jobs` in its row format."""
    with _raw(path) as raw:
        raw.execute("PRAGMA journal_mode = WAL")
        raw.executescript(V1_SCHEMA)
        raw.executemany(
            f"INSERT INTO jobs ({V1_COLUMNS}) VALUES ({', '.join('?' * 12)})",
            [v1_row(job) for job in jobs],
        )


@pytest.fixture
def v1_file(db_path: Path) -> Path:
    build_v1_file(db_path, v1_jobs())
    return db_path


class Snapshot:
    """Everything in a file (its SQL dump and its bytes), to prove nothing was written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dump, self.data = self._take()

    def _take(self) -> tuple[list[str], bytes]:
        with _raw(self.path) as raw:
            dump = list(raw.iterdump())
        return dump, self.path.read_bytes()

    def assert_unchanged(self) -> None:
        dump, data = self._take()
        assert dump == self.dump
        assert data == self.data, "the file's bytes changed"


@contextlib.contextmanager
def _raw(path: Path) -> Iterator[sqlite3.Connection]:
    raw = sqlite3.connect(path, isolation_level=None)
    try:
        yield raw
    finally:
        raw.close()


def version_rows(path: Path) -> list[tuple[Any, ...]]:
    with _raw(path) as raw:
        return raw.execute("SELECT version, name, applied FROM jobs_schema_version").fetchall()


def legacy_rows(path: Path) -> list[tuple[Any, ...]]:
    with _raw(path) as raw:
        return raw.execute("SELECT component, version FROM jobs_schema").fetchall()


def layout(raw: sqlite3.Connection, table: str) -> dict[str, Any]:
    """What SQLite enforces of `table`: columns (type, NOT NULL, default, key), its
    indexes (unique, partial, key columns each with its direction: 1 descending), and
    its CHECK constraints."""
    columns = raw.execute(
        'SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info(?)', (table,)
    ).fetchall()
    indexes = {}
    for name, unique, origin, partial in raw.execute(
        'SELECT name, "unique", origin, partial FROM pragma_index_list(?)', (table,)
    ).fetchall():
        on = raw.execute(
            'SELECT name, "desc" FROM pragma_index_xinfo(?) WHERE key ORDER BY seqno', (name,)
        ).fetchall()
        indexes[name if origin == "c" else origin] = (unique, partial, on)
    (sql,) = raw.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return {"columns": columns, "indexes": indexes, "checks": checks_of(sql)}


def checks_of(sql: str) -> list[str]:
    """The conditions of the CHECK constraints in a CREATE TABLE text, blanks collapsed."""
    found = []
    at = sql.find("CHECK")
    while at >= 0:
        start = sql.index("(", at)
        depth, end = 0, start
        for end in range(start, len(sql)):
            depth += {"(": 1, ")": -1}.get(sql[end], 0)
            if depth == 0:
                break
        found.append(" ".join(sql[start + 1 : end].split()))
        at = sql.find("CHECK", end)
    return sorted(found)


def columns_by_name(found: dict[str, Any], *, defaults: bool = True) -> dict[str, Any]:
    """`layout`'s answer with the columns keyed by name instead of listed in table order
    (each column's type, NOT NULL and key position kept exactly; its default too unless
    `defaults` is False)."""
    columns = {
        name: (kind, notnull, default if defaults else None, key)
        for name, kind, notnull, default, key in found["columns"]
    }
    return {**found, "columns": columns}


def derived_layout(table: sqlalchemy.Table) -> dict[str, Any]:
    """The layout SQLAlchemy creates from today's `table`, in a scratch database."""
    engine = sqlalchemy.create_engine("sqlite://")
    with engine.begin() as connection:
        table.create(connection)
        raw = cast(sqlite3.Connection, connection.connection.dbapi_connection)
        return layout(raw, table.name)


# -- release 1's file, opened by today's store -------------------------------------


async def test_a_v1_file_is_migrated_and_every_job_reads_back_and_keeps_working(
    v1_file: Path,
) -> None:
    store = SQLiteStore(v1_file)
    try:
        assert isinstance(store, MigratableStore)
        before = Snapshot(v1_file)
        assert await store.schema_version() == SchemaVersion(current=1, latest=SCHEMA_VERSION)
        before.assert_unchanged()  # reading the version wrote nothing
        await check_upgraded(store, v1_jobs(), AFTER)
        assert await store.schema_version() == LATEST
    finally:
        await store.close()
    rows = version_rows(v1_file)
    assert [(v, n) for v, n, _ in rows] == [(m.version, m.name) for m in MIGRATIONS]
    for _, _, applied in rows:  # the store's UTC time text
        assert datetime.fromisoformat(applied).tzinfo is UTC
        assert len(applied) == len("2030-01-01T00:00:00.000000Z")
    # The legacy row follows, so release 1 (which reads only it) refuses the file.
    assert legacy_rows(v1_file) == [("jobs", SCHEMA_VERSION)]


async def test_a_migrated_v1_file_has_the_layout_of_a_new_file(
    v1_file: Path, tmp_path: Path
) -> None:
    fresh = tmp_path / "fresh.db"
    for path in (v1_file, fresh):
        store = SQLiteStore(path)
        assert await store.migrate() == LATEST
        await store.close()
    with _raw(v1_file) as old, _raw(fresh) as new:
        for table in ("jobs", "jobs_schema", "jobs_schema_version"):
            assert layout(old, table) == layout(new, table)


async def test_migrate_is_idempotent_and_a_current_file_is_not_written(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    try:
        assert await store.schema_version() == SchemaVersion(current=None, latest=SCHEMA_VERSION)
        assert not db_path.exists(), "reading the version created the file"
        assert await store.migrate() == LATEST
        assert await store.migrate() == LATEST
    finally:
        await store.close()
    rows = version_rows(db_path)
    assert [v for v, _, _ in rows] == list(range(1, SCHEMA_VERSION + 1))
    before = Snapshot(db_path)
    again = SQLiteStore(db_path)
    try:
        assert await again.migrate() == LATEST
        assert await again.count_by_status() == dict.fromkeys(JobStatus, 0)
    finally:
        await again.close()
    before.assert_unchanged()


async def test_an_in_memory_store_reports_no_schema_until_first_use() -> None:
    store = SQLiteStore(":memory:")
    try:
        assert await store.schema_version() == SchemaVersion(current=None, latest=SCHEMA_VERSION)
        await store.count_by_status()
        assert await store.schema_version() == LATEST
    finally:
        await store.close()


# -- one path for every file: the steps make what `jobs_table` describes -----------


async def test_a_new_file_has_exactly_the_derived_tables(db_path: Path) -> None:
    """Columns, types, NOT NULL, defaults, CHECK and indexes of a file built by the steps
    equal what today's `jobs_table` (derived from the job schema) would create.

    Columns are compared by name, not position: a step adding a field appends its column
    (ALTER TABLE ADD COLUMN) while `jobs_table` puts it where the model declares it, and
    the store never depends on the order, as every statement names its columns. For the
    same reason the jobs table's column defaults are not compared: a step adding a NOT
    NULL column must give it a DEFAULT to fill the rows already there (SQLite allows no
    other way), and no statement relies on one.
    """
    store = SQLiteStore(db_path)
    await store.migrate()
    await store.close()
    with _raw(db_path) as raw:
        jobs, versions = layout(raw, "jobs"), layout(raw, "jobs_schema_version")
    derived = derived_layout(jobs_table)
    assert columns_by_name(jobs, defaults=False) == columns_by_name(derived, defaults=False)
    assert columns_by_name(versions) == columns_by_name(derived_layout(version_table))
    statuses = ", ".join(repr(status.value) for status in JobStatus)
    assert derived["checks"] == ["priority BETWEEN -100 AND 100", f"status IN ({statuses})"]
    assert derived["indexes"]["jobs_claim_idx"] == (
        0,
        0,
        [("status", 0), ("priority", 1), ("run_at", 0), ("id", 0)],
    )


def test_step_1_is_the_released_layout(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Step 1 alone leaves what release 1 left in a new file (the fixture), to the byte
    of the stored SQL."""
    monkeypatch.setattr(_migrations, "MIGRATIONS", MIGRATIONS[:1])
    engine = sqlalchemy.create_engine(f"sqlite:///{db_path}")
    with engine.begin() as connection:
        assert _migrations.migrate(connection, str(db_path)) == 1
    engine.dispose()
    with _raw(db_path) as migrated, _raw(db_path.with_name("v1.db")) as released:
        released.executescript(V1_SCHEMA)
        query = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name"
        assert migrated.execute(query).fetchall() == released.execute(query).fetchall()
        legacy = "SELECT * FROM jobs_schema"
        assert migrated.execute(legacy).fetchall() == released.execute(legacy).fetchall()


# -- refusals: nothing is written -----------------------------------------------------


def _make_newer(path: Path) -> None:
    with _raw(path) as raw:
        raw.execute(
            "INSERT INTO jobs_schema_version VALUES (?, 'from the future', ?)",
            (SCHEMA_VERSION + 1, "2031-01-01T00:00:00.000000Z"),
        )
        raw.execute("UPDATE jobs_schema SET version = ?", (SCHEMA_VERSION + 1,))


@pytest.mark.parametrize("mode", ["create", "no-create", "read-only"])
async def test_a_newer_file_is_refused_and_not_written(v1_file: Path, mode: str) -> None:
    setup = SQLiteStore(v1_file)
    await setup.migrate()
    await setup.close()
    _make_newer(v1_file)
    before = Snapshot(v1_file)
    store = SQLiteStore(v1_file, create_schema=mode != "no-create", read_only=mode == "read-only")
    try:
        assert await store.schema_version() == SchemaVersion(
            current=SCHEMA_VERSION + 1, latest=SCHEMA_VERSION
        )
        with pytest.raises(SchemaTooNew) as caught:
            await store.count_by_status()
        assert (caught.value.found, caught.value.known) == (SCHEMA_VERSION + 1, SCHEMA_VERSION)
        assert str(v1_file) in str(caught.value)
        with pytest.raises(SchemaTooNew):
            await store.insert([v1_jobs()[0]])
        if mode != "read-only":
            with pytest.raises(SchemaTooNew):
                await store.migrate()
    finally:
        await store.close()
    before.assert_unchanged()


async def test_a_file_only_release_1_recorded_as_newer_is_refused(db_path: Path) -> None:
    """The legacy record alone counts too (a newer release keeps it up to date)."""
    build_v1_file(db_path, [])
    with _raw(db_path) as raw:
        raw.execute("UPDATE jobs_schema SET version = 99")
    before = Snapshot(db_path)
    store = SQLiteStore(db_path)
    with pytest.raises(SchemaTooNew, match="version 99"):
        await store.get("00000000-0000-4000-8000-000000000001")
    await store.close()
    before.assert_unchanged()


@pytest.mark.parametrize("read_only", [False, True])
async def test_an_older_file_opened_without_migrating_is_behind_and_not_written(
    v1_file: Path, read_only: bool
) -> None:
    before = Snapshot(v1_file)
    store = SQLiteStore(v1_file, create_schema=False, read_only=read_only)
    try:
        assert await store.schema_version() == SchemaVersion(current=1, latest=SCHEMA_VERSION)
        with pytest.raises(SchemaBehind) as caught:
            await store.count_by_status()
        assert (caught.value.found, caught.value.latest) == (1, SCHEMA_VERSION)
        assert "jobs migrate" in str(caught.value)
    finally:
        await store.close()
    before.assert_unchanged()


async def test_migrate_upgrades_a_store_opened_without_migrating(v1_file: Path) -> None:
    """`jobs migrate` is the explicit request: it works on a `create_schema=False` store."""
    store = open_store(f"sqlite:///{v1_file}", create_schema=False)
    assert isinstance(store, SQLiteStore)
    try:
        with pytest.raises(SchemaBehind):
            await store.count_by_status()
        assert await store.migrate() == LATEST
        counts = await store.count_by_status()
        assert sum(counts.values()) == len(v1_jobs())
    finally:
        await store.close()


# -- several processes at once ------------------------------------------------------


def test_processes_opening_one_v1_file_at_once_migrate_it_once(v1_file: Path) -> None:
    """All succeed; each step is recorded once, and every job is still there."""
    h.open_schema_at_once(v1_file, 6)
    assert [v for v, _, _ in version_rows(v1_file)] == list(range(1, SCHEMA_VERSION + 1))
    assert legacy_rows(v1_file) == [("jobs", SCHEMA_VERSION)]
    with _raw(v1_file) as raw:
        stored = raw.execute(f"SELECT {V1_COLUMNS} FROM jobs ORDER BY id").fetchall()
    assert stored == sorted(v1_row(job) for job in v1_jobs())


# -- step 3: the status 'cancelled' and the column cancel_requested ------------------


def build_step_2_file(path: Path, jobs: list[Job], monkeypatch: pytest.MonkeyPatch) -> None:
    """A file as steps 1 and 2 leave it, holding `jobs` (step 2's rows are release 1's)."""
    with monkeypatch.context() as patch:
        patch.setattr(_migrations, "MIGRATIONS", MIGRATIONS[:2])
        engine = sqlalchemy.create_engine(f"sqlite:///{path}")
        with engine.begin() as connection:
            assert _migrations.migrate(connection, str(path)) == 2
        engine.dispose()
    with _raw(path) as raw:
        raw.executemany(
            f"INSERT INTO jobs ({V1_COLUMNS}) VALUES ({', '.join('?' * 12)})",
            [v1_row(job) for job in jobs],
        )


async def test_a_step_2_file_is_migrated_to_3_and_every_job_reads_back(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step 3 rebuilds `jobs`: every row of every status step 2 allows is copied as it
    was, with no cancel request, the indexes are kept (the layout of a new file), and
    the table then holds cancelled jobs and jobs asked to cancel."""
    jobs = v1_jobs()
    build_step_2_file(db_path, jobs, monkeypatch)
    with _raw(db_path) as raw, pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        raw.execute("UPDATE jobs SET status = 'cancelled' WHERE id = ?", (jobs[0].id,))
    store = SQLiteStore(db_path)
    try:
        assert await store.schema_version() == SchemaVersion(current=2, latest=SCHEMA_VERSION)
        for job in jobs:
            stored = await store.get(job.id)
            assert stored == job
            assert stored.cancel_requested is None
        assert await store.schema_version() == LATEST
    finally:
        await store.close()
    assert [v for v, _, _ in version_rows(db_path)] == list(range(1, SCHEMA_VERSION + 1))
    with _raw(db_path) as raw:
        copied = raw.execute(f"SELECT {V1_COLUMNS}, cancel_requested FROM jobs ORDER BY id")
        assert copied.fetchall() == sorted((*v1_row(job), None) for job in jobs)
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    fresh = SQLiteStore(tmp_path / "fresh.db")
    assert await fresh.migrate() == LATEST
    await fresh.close()
    with _raw(db_path) as old, _raw(tmp_path / "fresh.db") as new:
        assert layout(old, "jobs") == layout(new, "jobs")

    known = {job.id for job in jobs}
    added = [job for job in jobs_in_every_status() if job.id not in known]
    assert JobStatus.CANCELLED in {job.status for job in added}
    assert any(job.cancel_requested is not None for job in added)
    store = SQLiteStore(db_path)
    try:
        await store.insert(added)
        await check_upgraded(store, [*jobs, *added], AFTER)
    finally:
        await store.close()


# -- a step that rebuilds the table ---------------------------------------------------

#: The status CHECK of today's `jobs`, and the one a step adding `JobStatus.ARCHIVED`
#: would give it.
_KNOWN = ", ".join(repr(status.value) for status in JobStatus)
KNOWN_STATUSES = f"status IN ({_KNOWN})"
WITH_ARCHIVED = f"status IN ({_KNOWN}, 'archived')"
PRIORITY_RANGE = "priority BETWEEN -100 AND 100"


def _archived_step(connection: sqlalchemy.Connection) -> None:
    """Rebuild `jobs` as the earlier steps left it (its stored definition, so every
    column they made), with one more status added to its CHECK."""
    (sql,) = connection.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'jobs'"
    ).one()
    definition = sql[sql.index("(") + 1 : sql.rindex(")")]
    assert definition.count(KNOWN_STATUSES) == 1, definition
    rebuild_table(connection, "jobs", definition.replace(KNOWN_STATUSES, WITH_ARCHIVED))


@pytest.fixture
def with_archived_step(monkeypatch: pytest.MonkeyPatch) -> int:
    step = Migration(SCHEMA_VERSION + 1, "status archived", _archived_step)
    monkeypatch.setattr(_migrations, "MIGRATIONS", (*MIGRATIONS, step))
    return step.version


def _insert_raw(path: Path, job: Job, status: str) -> None:
    """`job` as today's store writes it, but with `status` (the file's latest layout)."""
    row = list(insert_values(job))
    row[COLUMNS.index("status")] = status
    with _raw(path) as raw:
        raw.execute(INSERT, row)


async def test_a_rebuild_step_adds_a_status_and_keeps_every_row_and_index(
    v1_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_archived_step: int
) -> None:
    """A v1 file migrated through today's steps and the rebuild: every job reads back,
    and the table has the columns and indexes of a file of today's steps alone."""
    jobs = v1_jobs()
    store = SQLiteStore(v1_file)
    try:
        assert await store.schema_version() == SchemaVersion(current=1, latest=with_archived_step)
        for job in jobs:
            assert await store.get(job.id) == job
        assert await store.schema_version() == SchemaVersion(
            current=with_archived_step, latest=with_archived_step
        )
    finally:
        await store.close()
    assert [v for v, _, _ in version_rows(v1_file)] == list(range(1, with_archived_step + 1))
    with monkeypatch.context() as patch:  # today's steps, without the rebuild
        patch.setattr(_migrations, "MIGRATIONS", MIGRATIONS)
        today = SQLiteStore(tmp_path / "today.db")
        assert await today.migrate() == LATEST
        await today.close()
    with _raw(tmp_path / "today.db") as raw:
        before = layout(raw, "jobs")
    with _raw(v1_file) as raw:
        after = layout(raw, "jobs")
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert before["checks"] == [PRIORITY_RANGE, KNOWN_STATUSES]
    assert after["columns"] == before["columns"]
    assert after["indexes"] == before["indexes"]
    assert after["checks"] == [PRIORITY_RANGE, WITH_ARCHIVED]
    extra = jobs_in_every_status(UPGRADE_NOW + timedelta(days=1))[0]
    _insert_raw(v1_file, _with_id(extra, "archived-1"), "archived")  # the new status is accepted
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        _insert_raw(v1_file, _with_id(extra, "bogus-1"), "bogus")  # the CHECK still holds


async def test_a_rebuild_refuses_a_table_other_tables_reference(
    v1_file: Path, with_archived_step: int
) -> None:
    """Dropping it would cascade into (or fail on) the referencing rows: refused, and
    the migration's transaction leaves the file as it was."""
    with _raw(v1_file) as raw:
        raw.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, job TEXT REFERENCES jobs (id))")
        raw.execute("INSERT INTO orders VALUES (1, ?)", (v1_jobs()[0].id,))
    before = Snapshot(v1_file)
    store = SQLiteStore(v1_file)
    try:
        with pytest.raises(StoreError, match=r"cannot rebuild table 'jobs'.*orders"):
            await store.count_by_status()
    finally:
        await store.close()
    before.assert_unchanged()


def _with_id(job: Job, job_id: str) -> Job:
    return attrs.evolve(job, id=job_id)


# -- the README ---------------------------------------------------------------------

README = Path(__file__).resolve().parents[2] / "packages" / "jobs-sqlite" / "README.md"


def test_the_readme_migration_snippet_runs_as_written(tmp_path: Path) -> None:
    """On a file of release 1: it reports version 1, then migrates it."""
    section = README.read_text().split("## Migrations", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    build_v1_file(tmp_path / "jobs.db", v1_jobs())
    done = subprocess.run(
        [sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        repr(SchemaVersion(current=1, latest=SCHEMA_VERSION)),
        repr(LATEST),
    ]


async def test_a_step_3_file_is_migrated_to_4_and_every_job_reads_back(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step 4 adds `snoozes`: every row of every status step 3 allows (cancelled ones and
    one asked to cancel among them) reads back as it was, with no snooze counted."""
    jobs = v1_jobs()
    build_step_2_file(db_path, jobs, monkeypatch)
    with monkeypatch.context() as patch:
        patch.setattr(_migrations, "MIGRATIONS", MIGRATIONS[:3])
        engine = sqlalchemy.create_engine(f"sqlite:///{db_path}")
        with engine.begin() as connection:
            assert _migrations.migrate(connection, str(db_path)) == 3
        engine.dispose()
    asked = next(job for job in jobs if job.status is JobStatus.PROCESSING)
    stopped = next(job for job in jobs if job.status is JobStatus.FAILED)
    at = AFTER - timedelta(minutes=1)
    with _raw(db_path) as raw:
        raw.execute(
            "UPDATE jobs SET cancel_requested = ? WHERE id = ?", (format_time(at), asked.id)
        )
        raw.execute("UPDATE jobs SET status = 'cancelled' WHERE id = ?", (stopped.id,))
    expected = {job.id: job for job in jobs}
    expected[asked.id] = attrs.evolve(asked, cancel_requested=at)
    expected[stopped.id] = attrs.evolve(stopped, status=JobStatus.CANCELLED)
    store = SQLiteStore(db_path)
    try:
        assert await store.schema_version() == SchemaVersion(current=3, latest=SCHEMA_VERSION)
        for job in expected.values():
            stored = await store.get(job.id)
            assert stored == job
            assert stored.snoozes == 0
        assert await store.schema_version() == LATEST
        await check_upgraded(store, list(expected.values()), AFTER)
    finally:
        await store.close()
    assert [v for v, _, _ in version_rows(db_path)] == list(range(1, SCHEMA_VERSION + 1))


async def test_a_step_4_file_is_migrated_to_5_and_every_job_reads_back(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step 5 adds `errors` (`[]`: no recorded attempt) and `result` (null): every row of
    every status step 4 allows (a snoozed one among them) reads back as it was."""
    jobs = v1_jobs()
    build_step_2_file(db_path, jobs, monkeypatch)
    with monkeypatch.context() as patch:
        patch.setattr(_migrations, "MIGRATIONS", MIGRATIONS[:4])
        engine = sqlalchemy.create_engine(f"sqlite:///{db_path}")
        with engine.begin() as connection:
            assert _migrations.migrate(connection, str(db_path)) == 4
        engine.dispose()
    snoozed = next(job for job in jobs if job.status is JobStatus.PENDING)
    stopped = next(job for job in jobs if job.status is JobStatus.FAILED)
    with _raw(db_path) as raw:
        raw.execute("UPDATE jobs SET snoozes = 4 WHERE id = ?", (snoozed.id,))
        raw.execute("UPDATE jobs SET status = 'cancelled' WHERE id = ?", (stopped.id,))
    expected = {job.id: job for job in jobs}
    expected[snoozed.id] = attrs.evolve(snoozed, snoozes=4)
    expected[stopped.id] = attrs.evolve(stopped, status=JobStatus.CANCELLED)
    store = SQLiteStore(db_path)
    try:
        assert await store.schema_version() == SchemaVersion(current=4, latest=SCHEMA_VERSION)
        for job in expected.values():
            stored = await store.get(job.id)
            assert stored == job
            assert (stored.errors, stored.result) == ((), None)
        assert await store.schema_version() == LATEST
        await check_upgraded(store, list(expected.values()), AFTER)
    finally:
        await store.close()
    assert [v for v, _, _ in version_rows(db_path)] == list(range(1, SCHEMA_VERSION + 1))


async def test_a_step_5_file_is_migrated_to_6_and_every_job_reads_back(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step 6 adds `priority` (0 in every old row; a CHECK keeps it in -100..100) and
    rebuilds the claim index on (status, priority DESC, run_at, id): every row of every
    status step 5 allows (snoozed, cancelled, with a history and a result among them)
    reads back as it was, and the claim then takes a higher priority first."""
    jobs = v1_jobs()
    build_step_2_file(db_path, jobs, monkeypatch)
    with monkeypatch.context() as patch:
        patch.setattr(_migrations, "MIGRATIONS", MIGRATIONS[:5])
        engine = sqlalchemy.create_engine(f"sqlite:///{db_path}")
        with engine.begin() as connection:
            assert _migrations.migrate(connection, str(db_path)) == 5
        engine.dispose()
    snoozed = next(job for job in jobs if job.status is JobStatus.PENDING)
    stopped = next(job for job in jobs if job.status is JobStatus.FAILED)
    done = next(job for job in jobs if job.status is JobStatus.COMPLETED)
    history = (AttemptError(attempt=1, at=UPGRADE_NOW, error="boom", traceback="Traceback"),)
    with _raw(db_path) as raw:
        claim_index = raw.execute("SELECT * FROM pragma_index_info('jobs_claim_idx')").fetchall()
        assert [name for _, _, name in claim_index] == ["status", "run_at", "id"]
        raw.execute("UPDATE jobs SET snoozes = 4 WHERE id = ?", (snoozed.id,))
        raw.execute("UPDATE jobs SET status = 'cancelled' WHERE id = ?", (stopped.id,))
        raw.execute(
            "UPDATE jobs SET errors = ?, result = ? WHERE id = ?",
            (json.dumps(errors_to_json(history)), '{"sent": [1, "é"]}', done.id),
        )
    expected = {job.id: job for job in jobs}
    expected[snoozed.id] = attrs.evolve(snoozed, snoozes=4)
    expected[stopped.id] = attrs.evolve(stopped, status=JobStatus.CANCELLED)
    expected[done.id] = attrs.evolve(done, errors=history, result={"sent": [1, "é"]})
    store = SQLiteStore(db_path)
    try:
        assert await store.schema_version() == SchemaVersion(current=5, latest=SCHEMA_VERSION)
        for job in expected.values():
            stored = await store.get(job.id)
            assert stored == job
            assert stored.priority == 0
        assert await store.schema_version() == LATEST
        await check_upgraded(store, list(expected.values()), AFTER)
        low = make_job(topic="after", run_at=AFTER - timedelta(hours=1))
        high = make_job(topic="after", run_at=AFTER, priority=9)
        await store.insert([low, high])
        (first,) = await store.claim(topics=["after"], now=AFTER, lease=LEASE, limit=1)
        assert (first.id, first.priority) == (high.id, 9)
    finally:
        await store.close()
    assert [v for v, _, _ in version_rows(db_path)] == list(range(1, SCHEMA_VERSION + 1))
    with _raw(db_path) as raw:
        assert layout(raw, "jobs")["indexes"]["jobs_claim_idx"] == (
            0,
            0,
            [("status", 0), ("priority", 1), ("run_at", 0), ("id", 0)],
        )
        for out_of_range in (-101, 101):
            with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
                raw.execute("UPDATE jobs SET priority = ? WHERE id = ?", (out_of_range, low.id))
        raw.execute("UPDATE jobs SET priority = 100 WHERE id = ?", (low.id,))


async def test_a_step_6_file_is_migrated_to_7_and_gets_an_empty_topics_table(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step 7 adds `jobs_topics` (no row: every topic unlimited and claimable) and
    touches no job: every row of every status step 6 allows reads back as it was; then
    a pause and a limit are stored, checked and obeyed by the claim."""
    with monkeypatch.context() as patch:
        patch.setattr(_migrations, "MIGRATIONS", MIGRATIONS[:6])
        engine = sqlalchemy.create_engine(f"sqlite:///{db_path}")
        with engine.begin() as connection:
            assert _migrations.migrate(connection, str(db_path)) == 6
        engine.dispose()
    jobs = jobs_in_every_status()
    assert {job.status for job in jobs} == set(JobStatus)
    with _raw(db_path) as raw:
        assert (
            raw.execute("SELECT name FROM sqlite_master WHERE name = 'jobs_topics'").fetchall()
            == []
        )
        for job in jobs:
            _insert_before_step_8(raw, job)
    store = SQLiteStore(db_path)
    try:
        assert await store.schema_version() == SchemaVersion(current=6, latest=SCHEMA_VERSION)
        for job in jobs:
            assert await store.get(job.id) == job
        assert await store.schema_version() == LATEST
        by_topic = {info.topic: info for info in await store.topics()}
        assert not any(info.paused or info.max_running is not None for info in by_topic.values())
        assert sum(sum(info.counts.values()) for info in by_topic.values()) == len(jobs)
        await check_upgraded(store, jobs, AFTER)
        await store.insert([make_job(topic="after", run_at=AFTER) for _ in range(3)])
        await store.set_paused("after", True)
        assert await store.claim(topics=["after"], now=AFTER, lease=LEASE, limit=5) == []
        await store.set_paused("after", False)
        await store.set_max_running("after", 2)
        claimed = await store.claim(topics=["after"], now=AFTER, lease=LEASE, limit=5)
        assert len(claimed) == 2
    finally:
        await store.close()
    assert [v for v, _, _ in version_rows(db_path)] == list(range(1, SCHEMA_VERSION + 1))
    with _raw(db_path) as raw:
        assert columns_by_name(layout(raw, "jobs_topics")) == columns_by_name(
            derived_layout(topics_table)
        )
        assert raw.execute("SELECT * FROM jobs_topics").fetchall() == [("after", 0, 2)]
        for bad in (
            "INSERT INTO jobs_topics VALUES ('x', 2, NULL)",
            "INSERT INTO jobs_topics VALUES ('x', 0, -1)",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
                raw.execute(bad)


def _insert_before_step_8(raw: sqlite3.Connection, job: Job) -> None:
    """Insert `job` into a file older than step 8 (no `unique_key` column)."""
    assert job.unique_key is None
    values = dict(zip(COLUMNS, insert_values(job), strict=True))
    del values["unique_key"]
    marks = ", ".join("?" * len(values))
    raw.execute(f"INSERT INTO jobs ({', '.join(values)}) VALUES ({marks})", list(values.values()))


async def test_a_step_7_file_is_migrated_to_8_and_holds_unique_keys(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step 8 adds `unique_key` (NULL in every old row) and the partial unique index of
    active keys, touching no row: every job of every status reads back as it was and
    still works; then keys are held (a duplicate answers the holder, a requeue over a
    held key raises), and the index refuses a second active row even written by hand."""
    with monkeypatch.context() as patch:
        patch.setattr(_migrations, "MIGRATIONS", MIGRATIONS[:7])
        engine = sqlalchemy.create_engine(f"sqlite:///{db_path}")
        with engine.begin() as connection:
            assert _migrations.migrate(connection, str(db_path)) == 7
        engine.dispose()
    jobs = jobs_in_every_status()
    assert {job.status for job in jobs} == set(JobStatus)
    with _raw(db_path) as raw:
        for job in jobs:
            _insert_before_step_8(raw, job)
    store = SQLiteStore(db_path)
    try:
        assert await store.schema_version() == SchemaVersion(current=7, latest=SCHEMA_VERSION)
        for job in jobs:
            assert (await store.get(job.id)) == job
        assert await store.schema_version() == LATEST
        await check_upgraded(store, jobs, AFTER)
        await check_unique_keys(store, AFTER)
    finally:
        await store.close()
    assert [v for v, _, _ in version_rows(db_path)] == list(range(1, SCHEMA_VERSION + 1))
    with _raw(db_path) as raw:
        assert layout(raw, "jobs")["indexes"]["jobs_unique_key_idx"][:2] == (1, 1)
        held = raw.execute(
            "SELECT id FROM jobs WHERE unique_key = 'k' AND status = 'pending'"
        ).fetchall()
        assert len(held) == 1
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed"):
            raw.execute(
                "UPDATE jobs SET status = 'pending' WHERE unique_key = 'k' AND status = 'cancelled'"
            )


async def test_a_step_7_file_is_migrated_and_gets_an_empty_schedules_table(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The schedules step adds `jobs_schedules` (no row) and touches no job: every row
    of every status reads back as it was; then a schedule is stored and fires."""
    step = next(m.version for m in MIGRATIONS if m.name == _migrations.SCHEDULES_STEP_NAME)
    with monkeypatch.context() as patch:
        patch.setattr(_migrations, "MIGRATIONS", MIGRATIONS[: step - 1])
        engine = sqlalchemy.create_engine(f"sqlite:///{db_path}")
        with engine.begin() as connection:
            assert _migrations.migrate(connection, str(db_path)) == step - 1
        engine.dispose()
    jobs = jobs_in_every_status()
    assert {job.status for job in jobs} == set(JobStatus)
    with _raw(db_path) as raw:
        assert (
            raw.execute("SELECT name FROM sqlite_master WHERE name = 'jobs_schedules'").fetchall()
            == []
        )
        for job in jobs:
            raw.execute(INSERT, list(insert_values(job)))
    store = SQLiteStore(db_path)
    try:
        assert await store.schema_version() == SchemaVersion(
            current=step - 1, latest=SCHEMA_VERSION
        )
        for job in jobs:
            assert await store.get(job.id) == job
        assert await store.schema_version() == LATEST
        assert await store.list_schedules() == []
        await check_upgraded(store, jobs, AFTER)
        schedule = make_schedule(next_fire_at=AFTER, topic="after")
        await store.save_schedule(schedule)
        slot_job = make_job(topic="after", run_at=AFTER)
        assert await store.fire_schedule(
            schedule.name,
            expected_next_fire_at=AFTER,
            next_fire_at=AFTER + timedelta(seconds=1),
            jobs=[slot_job],
        )
        assert await store.get(slot_job.id) == slot_job
    finally:
        await store.close()
    assert [v for v, _, _ in version_rows(db_path)] == list(range(1, SCHEMA_VERSION + 1))
    with _raw(db_path) as raw:
        assert columns_by_name(layout(raw, "jobs_schedules")) == columns_by_name(
            derived_layout(schedules_table)
        )
        assert raw.execute("SELECT name, paused FROM jobs_schedules").fetchall() == [("nightly", 0)]
        with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
            raw.execute("UPDATE jobs_schedules SET paused = 2")
