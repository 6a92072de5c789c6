"""Both stores number their migrations the same way: `steps()` hands out `MIGRATIONS`
only when its versions run 1..n with no gap and no name appears twice."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from jobs_postgres import _migrations as postgres_migrations
from jobs_sqlite import _migrations as sqlite_migrations

STORES = pytest.mark.parametrize(
    "module", [sqlite_migrations, postgres_migrations], ids=["sqlite", "postgres"]
)


@STORES
def test_the_shipped_list_is_numbered_from_one(module: ModuleType) -> None:
    migrations = module.steps()
    assert migrations is module.MIGRATIONS
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert module.latest_version() == len(migrations)


@STORES
@pytest.mark.parametrize(
    "numbering",
    [[(2, "a")], [(1, "a"), (3, "b")], [(2, "b"), (1, "a")], [(1, "a"), (1, "b")]],
    ids=["not-from-one", "gap", "out-of-order", "repeated"],
)
def test_a_misnumbered_list_is_refused(
    module: ModuleType, numbering: list[tuple[int, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad: tuple[Any, ...] = tuple(module.Migration(v, n, _unused) for v, n in numbering)
    monkeypatch.setattr(module, "MIGRATIONS", bad)
    with pytest.raises(AssertionError, match=r"numbered 1\.\.n"):
        module.latest_version()


@STORES
def test_a_name_used_twice_is_refused(module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = (module.Migration(1, "same", _unused), module.Migration(2, "same", _unused))
    monkeypatch.setattr(module, "MIGRATIONS", bad)
    with pytest.raises(AssertionError, match="distinct names"):
        module.steps()


def _unused(*_: object) -> None:
    raise AssertionError("a refused list runs no step")
