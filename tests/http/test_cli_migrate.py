"""`jobs migrate [--check]` against a migratable test store, found by URL scheme.

`fakeschema://` is registered in the `jobs_core.stores` entry-point group for these
tests only; its databases are kept in `DATABASES`, so one run can migrate and the
next check. The real stores are checked end to end elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import attrs
import pytest

import jobs_core._registry
from jobs_core import (
    MemoryStore,
    MigratableStore,
    SchemaTooNew,
    SchemaVersion,
    StoreUnavailable,
)
from jobs_http.__main__ import main
from jobs_http._cli import without_password

LATEST = 2
URL = "fakeschema://ops:s3cret@db.internal:5432/jobs"
SHOWN = "fakeschema://ops@db.internal:5432/jobs"


@attrs.define
class Database:
    """One fake database: its schema version and what was done to it."""

    current: int | None
    #: Raised by every schema call, when set (an unreachable database).
    error: Exception | None = None
    #: `migrate()` finds a newer schema than `schema_version()` did (a newer deploy raced).
    newer_on_migrate: bool = False
    migrations: int = 0
    opened_with: list[bool] = attrs.Factory(list)
    closed: int = 0


DATABASES: dict[str, Database] = {}


class FakeSchemaStore(MemoryStore):
    """A memory store whose database has a numbered schema (`MigratableStore`)."""

    def __init__(self, database: Database) -> None:
        super().__init__()
        self.database = database

    @classmethod
    def from_url(cls, url: str, *, create_schema: bool = True) -> FakeSchemaStore:
        database = DATABASES[url.rpartition("/")[2]]
        database.opened_with.append(create_schema)
        return cls(database)

    async def schema_version(self) -> SchemaVersion:
        if self.database.error is not None:
            raise self.database.error
        return SchemaVersion(current=self.database.current, latest=LATEST)

    async def migrate(self) -> SchemaVersion:
        if self.database.newer_on_migrate:
            raise SchemaTooNew("the fake database", LATEST + 1, LATEST)
        self.database.current = LATEST
        self.database.migrations += 1
        return SchemaVersion(current=LATEST, latest=LATEST)

    async def close(self) -> None:
        self.database.closed += 1
        await super().close()


@pytest.fixture(autouse=True)
def _fake_scheme(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    fake = EntryPoint(
        name="fakeschema",
        value=f"{__name__}:FakeSchemaStore.from_url",
        group=jobs_core._registry.GROUP,
    )

    def with_fake(**selection: Any) -> Any:
        found = entry_points(**selection)
        return [*found, fake] if selection.get("group") == fake.group else found

    monkeypatch.setattr(jobs_core._registry, "entry_points", with_fake)
    yield
    DATABASES.clear()


def database(current: int | None, **state: Any) -> Database:
    DATABASES["jobs"] = Database(current=current, **state)
    return DATABASES["jobs"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["migrate", "--db", URL, *argv])
    out, err = capsys.readouterr()
    assert "s3cret" not in out + err
    return code, out, err


def test_the_fake_is_a_migratable_store() -> None:
    assert isinstance(FakeSchemaStore(Database(current=1)), MigratableStore)
    assert not isinstance(MemoryStore(), MigratableStore)


def test_migrate_upgrades_and_prints_both_versions(capsys: pytest.CaptureFixture[str]) -> None:
    db = database(current=1)
    assert run(capsys) == (0, f"jobs schema at {SHOWN}: version 1 -> 2 (latest 2)\n", "")
    assert db.current == LATEST
    assert db.migrations == 1
    assert db.opened_with == [True]
    assert db.closed == 1
    # and then it is up to date, for a check as for another migrate
    assert run(capsys, "--check") == (
        0,
        f"jobs schema at {SHOWN}: version 2, up to date (latest 2)\n",
        "",
    )
    assert run(capsys)[:2] == (0, f"jobs schema at {SHOWN}: version 2, up to date (latest 2)\n")
    assert db.migrations == 1


def test_migrate_creates_a_missing_schema(capsys: pytest.CaptureFixture[str]) -> None:
    database(current=None)
    assert run(capsys) == (0, f"jobs schema at {SHOWN}: version none -> 2 (latest 2)\n", "")


@pytest.mark.parametrize(("current", "shown"), [(1, "1"), (None, "none")])
def test_check_exits_1_when_behind_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], current: int | None, shown: str
) -> None:
    db = database(current=current)
    code, out, err = run(capsys, "--check")
    assert code == 1
    assert out == (
        f"jobs schema at {SHOWN}: version {shown}, behind (latest 2);"
        " run `jobs migrate` with the same --db to upgrade it\n"
    )
    assert err == ""
    assert db.current == current
    assert db.migrations == 0
    assert db.opened_with == [False]  # opened without creating anything
    assert db.closed == 1


@pytest.mark.parametrize("check", [[], ["--check"]])
def test_a_newer_database_exits_3(capsys: pytest.CaptureFixture[str], check: list[str]) -> None:
    db = database(current=LATEST + 1)
    code, out, err = run(capsys, *check)
    assert code == 3
    assert out == ""
    assert err == (
        f"jobs: error: the jobs schema at {SHOWN} is version 3, newer than this release"
        " knows (up to 2): upgrade the jobs packages\n"
    )
    assert db.current == LATEST + 1
    assert db.migrations == 0


def test_a_newer_schema_found_while_migrating_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    database(current=1, newer_on_migrate=True)
    code, out, err = run(capsys)
    assert (code, out) == (3, "")
    assert "newer than this release" in err


@pytest.mark.parametrize("check", [[], ["--check"]])
def test_an_unreachable_database_exits_4(
    capsys: pytest.CaptureFixture[str], check: list[str]
) -> None:
    db = database(current=1, error=StoreUnavailable("cannot reach db.internal:5432"))
    assert run(capsys, *check) == (4, "", "jobs: error: cannot reach db.internal:5432\n")
    assert db.closed == 1


def test_an_unknown_scheme_exits_4(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["migrate", "--db", "nosuchdb://x"])
    assert code == 4
    assert "no installed store handles 'nosuchdb'" in capsys.readouterr().err


@pytest.mark.parametrize("check", [[], ["--check"]])
def test_the_memory_store_has_nothing_to_migrate(
    capsys: pytest.CaptureFixture[str], check: list[str]
) -> None:
    assert main(["migrate", "--db", "memory://", *check]) == 0
    out, err = capsys.readouterr()
    assert out == "jobs schema at memory://: none to migrate (MemoryStore keeps no schema)\n"
    assert err == ""


def test_a_bad_command_line_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["migrate", "--chek"])
    assert exit_info.value.code == 2


def test_help_describes_migrate_and_its_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "migrate" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["migrate", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--check" in out
    for line in ("0  up to date", "1  --check: behind", "3  the database is newer", "4  the store"):
        assert line in out


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://jobs:pw@db/jobs", "postgresql://jobs@db/jobs"),
        ("postgresql://jobs:p@ss@db:5432/jobs", "postgresql://jobs@db:5432/jobs"),
        ("postgresql://:pw@[::1]:5432/jobs", "postgresql://[::1]:5432/jobs"),
        (
            "postgresql://db/jobs?sslmode=require&password=pw",
            "postgresql://db/jobs?sslmode=require",
        ),
        ("postgresql://jobs@db/jobs", "postgresql://jobs@db/jobs"),
        ("sqlite:///jobs_data/jobs.db", "sqlite:///jobs_data/jobs.db"),
        ("memory://", "memory://"),
    ],
)
def test_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    assert without_password(url) == shown
