"""`jobs stats|list|get` on a database without a jobs table: fail, and create nothing.

A mistyped `--db` used to create an empty database and report zeros; now the
read-only commands open the store with `create_schema=False`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs_http.__main__ import main
from tests.pg_admin import admin_connect, throwaway_database

READ_ONLY = [["stats"], ["list"], ["get", "0190a8c4-1b2c-7d3e-8f40-123456789abc"]]


def _files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("argv", READ_ONLY)
@pytest.mark.parametrize("db", ["sqlite:///typo.db", "sqlite:///does/not/exist.db", "absolute"])
def test_sqlite_read_only_command_on_a_missing_file_fails_and_creates_nothing(
    argv: list[str],
    db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    if db == "absolute":
        db = f"sqlite:///{tmp_path / 'nowhere' / 'jobs.db'}"
    path = db.removeprefix("sqlite:///")
    assert main([*argv, "--db", db]) == 1
    assert capsys.readouterr().err == f"jobs: error: no jobs table at {path}\n"
    assert _files_under(tmp_path) == []


def test_sqlite_read_only_command_on_a_file_without_the_table_creates_no_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    monkeypatch.chdir(tmp_path)
    with sqlite3.connect(tmp_path / "other.db") as conn:
        conn.execute("CREATE TABLE unrelated (x)")
    conn.close()
    assert main(["stats", "--db", "sqlite:///other.db"]) == 1
    assert "no jobs table at other.db" in capsys.readouterr().err
    with sqlite3.connect(tmp_path / "other.db") as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    conn.close()
    assert tables == ["unrelated"]


def test_sqlite_enqueue_still_creates_the_folder_file_and_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    db = "sqlite:///new/jobs.db"
    assert main(["enqueue", "t", "--db", db]) == 0
    assert (tmp_path / "new" / "jobs.db").is_file()
    capsys.readouterr()
    assert main(["stats", "--db", db, "--json"]) == 0
    assert '"total":1' in capsys.readouterr().out.replace(" ", "")


def _tables(url: str) -> list[str]:
    with admin_connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        ).fetchall()
    return [str(r[0]) for r in rows]


@pytest.mark.parametrize("argv", READ_ONLY)
def test_postgres_read_only_command_on_an_empty_database_creates_no_table(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with throwaway_database("jobs_cli_ro") as url:
        assert main([*argv, "--db", url]) == 1
        assert capsys.readouterr().err == f"jobs: error: no jobs table at {url}\n"
        assert _tables(url) == []


def test_postgres_enqueue_still_creates_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    with throwaway_database("jobs_cli_rw") as url:
        assert main(["enqueue", "t", "--db", url]) == 0
        assert "jobs" in _tables(url)
        capsys.readouterr()
        assert main(["stats", "--db", url, "--json"]) == 0
        assert '"total":1' in capsys.readouterr().out.replace(" ", "")


def test_postgres_missing_database_names_the_connection_not_table_creation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with throwaway_database("jobs_cli_gone") as url:
        missing = url + "_missing"
        assert main(["stats", "--db", missing]) == 1
        err = capsys.readouterr().err
    assert "while connecting to the database" in err
    assert "creating the jobs table" not in err
