"""The PostgreSQL server the tests use, and autocommit admin connections to it.

The server is expected on 127.0.0.1:5432 (user `postgres`, trust auth), or wherever
`JOBS_TEST_PG` points (a URL of the maintenance database). If it cannot be reached the
tests fail with a message saying so; they never skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

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


@contextmanager
def throwaway_database(
    prefix: str, *, before_drop: Callable[[], object] | None = None
) -> Iterator[str]:
    """URL of a new, empty database named `<prefix>_<random>`, dropped (sessions and all)
    afterwards; `before_drop` runs first (say, to restart a server a test stopped)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin_connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(ADMIN_URL, name)
    finally:
        if before_drop is not None:
            before_drop()
        with admin_connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
