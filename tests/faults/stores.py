"""Opening more stores on the same data, as another process or rescuer would."""

from __future__ import annotations

from pathlib import Path

from jobs_core import JobStore
from jobs_postgres import PostgresStore
from jobs_sqlite import SQLiteStore


async def second_connection(store: JobStore, tmp_path: Path, pg_url: str | None) -> JobStore:
    """Another store on the same data: a second connection, as a separate rescuer has."""
    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path)
    if isinstance(store, PostgresStore):
        assert pg_url is not None
        return PostgresStore(pg_url, table=store.table.name)
    return store
