"""PostgreSQL test harness: one throw-away database per test run, one table per test.

The server is expected on 127.0.0.1:5432 (user `postgres`, trust auth), or wherever
`JOBS_TEST_PG` points (a URL of the maintenance database). If it cannot be reached
the tests fail with a message saying so; they never skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from jobs_postgres import PostgresStore

ADMIN_URL = os.environ.get("JOBS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def with_database(url: str, database: str) -> str:
    """`url` pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


def admin_connect(url: str = ADMIN_URL) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection, or a test failure naming the server."""
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {url} ({exc}). Start it (`.ci/run` does) or"
            " set JOBS_TEST_PG; the PostgreSQL tests never skip.",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a fresh database for this test run, dropped at the end."""
    name = f"jobs_test_{uuid.uuid4().hex[:12]}"
    with admin_connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(ADMIN_URL, name)
    finally:
        with admin_connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
