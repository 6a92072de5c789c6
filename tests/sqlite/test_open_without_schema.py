"""`SQLiteStore(create_schema=False)`: reads an existing file, creates no file or table."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs_core import SchemaMissing, open_store
from jobs_sqlite import SQLiteStore


async def test_missing_file_raises_schema_missing_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "jobs.db"
    store = open_store(f"sqlite:///{path}", create_schema=False)
    assert isinstance(store, SQLiteStore)
    try:
        with pytest.raises(SchemaMissing, match=f"^no jobs table at {path}$"):
            await store.count_by_status()
    finally:
        await store.close()
    assert list(tmp_path.iterdir()) == []


async def test_existing_store_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    writer = SQLiteStore(path)
    empty = await writer.count_by_status()
    await writer.close()
    reader = SQLiteStore(path, create_schema=False)
    try:
        assert await reader.count_by_status() == empty
    finally:
        await reader.close()
