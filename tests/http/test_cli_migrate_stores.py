"""`jobs migrate [--check]` end to end on the real stores, from the released v1 layout.

Each store's own migration tests check the layouts and the rows; these check what an
operator sees: the check says "behind" and exits 1, the migration prints both
versions, the check then passes, and a database newer than the release exits 3
without being written.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from jobs_core import Job
from jobs_core.testing.upgrade import RELEASE_1, UPGRADE_NOW, check_upgraded, jobs_in_every_status
from jobs_http.__main__ import main
from jobs_postgres import SCHEMA_VERSION as PG_LATEST
from jobs_postgres import PostgresStore
from jobs_sqlite import SCHEMA_VERSION as SQLITE_LATEST
from jobs_sqlite import SQLiteStore
from tests.pg_admin import admin_connect, throwaway_database
from tests.postgres.test_migrations import create_v1, write_v1_rows
from tests.sqlite.test_migrations import build_v1_file

LATER = UPGRADE_NOW + timedelta(seconds=1)


async def _check(store: SQLiteStore | PostgresStore, jobs: list[Job]) -> None:
    try:
        await check_upgraded(store, jobs, LATER)
    finally:
        await store.close()


def run(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str]:
    code = main(["migrate", "--db", url, *argv])
    out, err = capsys.readouterr()
    return code, out + err


def test_a_v1_sqlite_file_is_checked_migrated_and_still_holds_its_jobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "jobs.db"
    jobs = jobs_in_every_status(layout=RELEASE_1)
    build_v1_file(path, jobs)
    url = f"sqlite:///{path}"

    code, out = run(capsys, url, "--check")
    assert code == 1
    assert "version 1" in out
    assert "behind" in out
    assert run(capsys, url) == (
        0,
        f"jobs schema at {url}: version 1 -> {SQLITE_LATEST} (latest {SQLITE_LATEST})\n",
    )
    assert run(capsys, url, "--check") == (
        0,
        f"jobs schema at {url}: version {SQLITE_LATEST}, up to date (latest {SQLITE_LATEST})\n",
    )
    asyncio.run(_check(SQLiteStore(path), jobs))


def test_a_newer_sqlite_file_exits_3_and_is_not_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "jobs.db"
    build_v1_file(path, jobs_in_every_status(layout=RELEASE_1))
    url = f"sqlite:///{path}"
    assert run(capsys, url)[0] == 0
    with sqlite3.connect(path) as raw:
        raw.execute("INSERT INTO jobs_schema_version VALUES (99, 'from the future', 'x')")
    raw.close()
    before = path.read_bytes()
    for argv in ((), ("--check",)):
        code, out = run(capsys, url, *argv)
        assert code == 3
        assert "99" in out
    assert path.read_bytes() == before


def test_a_missing_sqlite_file_is_behind_for_the_check_and_created_by_migrate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "new.db"
    url = f"sqlite:///{path}"
    assert run(capsys, url, "--check")[0] == 1
    assert not path.exists()
    assert run(capsys, url) == (
        0,
        f"jobs schema at {url}: version none -> {SQLITE_LATEST} (latest {SQLITE_LATEST})\n",
    )


@pytest.fixture
def pg_url() -> Iterator[str]:
    with throwaway_database("jobs_cli_migrate") as url:
        yield url


def test_a_v1_postgres_table_is_checked_migrated_and_still_holds_its_jobs(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = jobs_in_every_status(layout=RELEASE_1)
    with admin_connect(pg_url) as db:
        create_v1(db)
        write_v1_rows(db, jobs)
    shown = pg_url

    code, out = run(capsys, pg_url, "--check")
    assert code == 1
    assert "version 1" in out
    assert run(capsys, pg_url) == (
        0,
        f"jobs schema at {shown}: version 1 -> {PG_LATEST} (latest {PG_LATEST})\n",
    )
    assert run(capsys, pg_url, "--check")[0] == 0
    asyncio.run(_check(PostgresStore.from_url(pg_url), jobs))


def test_a_newer_postgres_table_exits_3_and_is_not_written(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, pg_url)[0] == 0
    with admin_connect(pg_url) as db:
        db.execute("INSERT INTO jobs_schema_version (version, name) VALUES (99, 'future')")
    code, out = run(capsys, pg_url)
    assert code == 3
    assert "99" in out
    with admin_connect(pg_url) as db:
        rows = db.execute("SELECT version FROM jobs_schema_version ORDER BY version").fetchall()
    assert rows == [*((version,) for version in range(1, PG_LATEST + 1)), (99,)]
