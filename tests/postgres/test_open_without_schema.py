"""`PostgresStore(create_schema=False)`: reads an existing table, creates none."""

from __future__ import annotations

import psycopg
import pytest

from jobs_core import MemoryStore, SchemaMissing, open_store
from jobs_postgres import PostgresStore


def _has_table(db: psycopg.Connection[tuple[object, ...]], table: str) -> bool:
    return db.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone() == (True,)


async def test_missing_table_raises_schema_missing_and_creates_nothing(
    pg_url: str, table: str, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    store = open_store(f"{pg_url}?table={table}", create_schema=False)
    assert isinstance(store, PostgresStore)
    try:
        with pytest.raises(SchemaMissing, match=f"^no jobs table at {pg_url}"):
            await store.count_by_status()
    finally:
        await store.close()
    assert not _has_table(db, table)


async def test_existing_table_is_read_without_creating(pg_url: str, table: str) -> None:
    writer = PostgresStore(pg_url, table=table)
    reader = PostgresStore(pg_url, table=table, create_schema=False)
    try:
        empty = await writer.count_by_status()
        assert await reader.count_by_status() == empty
    finally:
        await writer.close()
        await reader.close()


def test_password_is_left_out_of_the_message() -> None:
    store = PostgresStore("postgresql://me:s3cret@127.0.0.1:1/x", create_schema=False)
    assert "s3cret" not in store._shown_url
    assert store._shown_url == "postgresql://me@127.0.0.1:1/x"


def test_memory_store_accepts_and_ignores_create_schema() -> None:
    assert isinstance(open_store("memory://", create_schema=False), MemoryStore)
