"""PostgreSQL test harness: one throw-away database per test run, one table per test.

The server is expected on 127.0.0.1:5432 (user `postgres`, trust auth), or wherever
`JOBS_TEST_PG` points (a URL of the maintenance database). If it cannot be reached
the tests fail with a message saying so; they never skip.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

from jobs_postgres import PostgresStore
from tests.pg_admin import admin_connect, throwaway_database


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a fresh database for this test run, dropped at the end."""
    with throwaway_database("jobs_test") as url:
        yield url


def fresh_table() -> str:
    """A table name nobody used yet in this run."""
    return f"jobs_{uuid.uuid4().hex[:16]}"


@pytest.fixture
def table() -> str:
    return fresh_table()


@pytest.fixture
async def pg_store(pg_url: str, table: str) -> AsyncIterator[PostgresStore]:
    """A store on its own, empty table."""
    store = PostgresStore(pg_url, table=table)
    yield store
    await store.close()


@pytest.fixture
def db(pg_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """An autocommit admin connection to the test run's database."""
    with admin_connect(pg_url) as conn:
        yield conn
