"""Shared fixtures of the SQLite store tests: real files in a temporary folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jobs_sqlite import SQLiteStore


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the test's database file lives (not created yet)."""
    return tmp_path / "jobs.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SQLiteStore]:
    """A fresh, empty store on its own file."""
    s = SQLiteStore(db_path)
    yield s
    await s.close()
