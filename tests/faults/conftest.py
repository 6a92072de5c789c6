"""Fixtures of the fault tests: one fresh store per test on each backend."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from jobs_core import JobStore, MemoryStore
from jobs_postgres import PostgresStore
from jobs_sqlite import SQLiteStore
from tests.faults.pg import fresh_database


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A database of this test session, dropped at the end."""
    with fresh_database() as url:
        yield url


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def any_store(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[JobStore]:
    """A fresh, empty store: memory, a SQLite file, or a new PostgreSQL table."""
    store: JobStore
    if backend == "memory":
        store = MemoryStore()
    elif backend == "sqlite":
        store = SQLiteStore(tmp_path / "jobs.db")
    else:
        url = request.getfixturevalue("pg_url")
        store = PostgresStore(url, table=f"jobs_{uuid.uuid4().hex[:16]}")
    yield store
    await store.close()
