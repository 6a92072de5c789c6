"""The real stores of the fault tests, and more stores on the same data, as another
process or rescuer would open."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs_core import JobStore
from jobs_postgres import PostgresStore
from jobs_sqlite import SQLiteStore
from tests.faults.pg import fresh_database

#: The `backend` parameter of a test on both real stores, each under its suite's mark.
STORES = [
    pytest.param("sqlite", marks=pytest.mark.fault_sqlite),
    pytest.param("postgres", marks=pytest.mark.fault_postgres),
]


@contextlib.contextmanager
def store_url(backend: str, tmp: Path) -> Iterator[str]:
    """A new, empty store: a SQLite file (WAL) or a PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'jobs.db'}"
    else:
        with fresh_database() as url:
            yield url


async def second_connection(store: JobStore, tmp_path: Path, pg_url: str | None) -> JobStore:
    """Another store on the same data: a second connection, as a separate rescuer has."""
    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path)
    if isinstance(store, PostgresStore):
        assert pg_url is not None
        return PostgresStore(pg_url, table=store.table.name)
    return store
