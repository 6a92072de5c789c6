"""Where each store's benchmark tables live, and its raw-driver floors.

A backend hands out a fresh store URL per workload (a new SQLite file, or a new
table in a freshly recreated PostgreSQL database), creates that table through the
store itself, and runs the raw floors on a table of the same shape.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Protocol

from benchmarks import _pg_raw, _sqlite_raw
from jobs_core import open_store


class Inserter(Protocol):
    """A raw-driver insert floor on one table; each call returns the seconds it took."""

    async def one_by_one(self, first: int, count: int) -> float: ...
    async def in_batches(self, first: int, count: int, chunk: int) -> float: ...
    async def close(self) -> None: ...


class Backend(Protocol):
    """One store under benchmark."""

    name: str
    #: How the W3 cross-process worker hears of new jobs.
    wakeup: str

    async def setup(self) -> None: ...
    def url(self, table: str) -> str: ...
    async def create(self, table: str) -> None: ...
    async def inserter(self, table: str) -> Inserter: ...
    async def fill_pending(self, table: str, n: int) -> None: ...
    async def analyze(self, table: str) -> None: ...
    async def keep_unanalyzed(self, table: str) -> None: ...
    async def drain_floor(self, table: str, n: int, *, batch: int) -> float: ...
    async def fill_finished(self, table: str, n: int) -> None: ...
    async def describe(self) -> str: ...
    async def teardown(self) -> None: ...


async def _create(url: str) -> None:
    store = open_store(url)
    try:
        await store.count_by_status()  # creates the schema
    finally:
        await store.close()


class SQLiteBackend:
    """One SQLite file per workload in a temporary directory."""

    name = "sqlite"
    wakeup = "polling (other process)"

    def __init__(self, directory: str | None = None) -> None:
        self._given = directory
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._dir = Path(directory) if directory else Path()

    async def setup(self) -> None:
        if self._given is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="jobs-bench-")
            self._dir = Path(self._tmp.name)
        self._dir.mkdir(parents=True, exist_ok=True)

    def path(self, table: str) -> str:
        return str((self._dir / f"{table}.db").absolute())

    def url(self, table: str) -> str:
        return f"sqlite:///{self.path(table)}"

    async def create(self, table: str) -> None:
        Path(self.path(table)).unlink(missing_ok=True)
        await _create(self.url(table))

    async def inserter(self, table: str) -> Inserter:
        return _SQLiteInserter(_sqlite_raw.RawInserter(self.path(table)))

    async def fill_pending(self, table: str, n: int) -> None:
        _sqlite_raw.fill_pending(self.path(table), n)

    async def analyze(self, table: str) -> None:
        return None  # the floors do not ANALYZE on SQLite either

    async def keep_unanalyzed(self, table: str) -> None:
        return None  # SQLite never analyzes on its own

    async def drain_floor(self, table: str, n: int, *, batch: int) -> float:
        return _sqlite_raw.drain(self.path(table), n, batch)

    async def fill_finished(self, table: str, n: int) -> None:
        _sqlite_raw.fill_finished(self.path(table), n)

    async def describe(self) -> str:
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version} (WAL, synchronous=NORMAL), file in {self._dir}"

    async def teardown(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


class _SQLiteInserter:
    """sqlite3's blocking floor behind the async `Inserter` face (run on the loop's
    thread, as the store's uncontended writes are)."""

    def __init__(self, raw: _sqlite_raw.RawInserter) -> None:
        self._raw = raw

    async def one_by_one(self, first: int, count: int) -> float:
        return self._raw.one_by_one(first, count)

    async def in_batches(self, first: int, count: int, chunk: int) -> float:
        return self._raw.in_batches(first, count, chunk)

    async def close(self) -> None:
        self._raw.close()


class PostgresBackend:
    """One table per workload in a database dropped and recreated for the run."""

    name = "postgres"
    wakeup = "LISTEN/NOTIFY (other process)"

    def __init__(self, server_url: str, database: str) -> None:
        self._server = server_url
        self._database = database
        self._url = _pg_raw.with_database(server_url, database)

    async def setup(self) -> None:
        await _pg_raw.recreate_database(self._server, self._database)

    def url(self, table: str) -> str:
        return f"{self._url}?table={table}"

    async def create(self, table: str) -> None:
        await _create(self.url(table))

    async def inserter(self, table: str) -> Inserter:
        return await _pg_raw.RawInserter.connect(self._url, table)

    async def fill_pending(self, table: str, n: int) -> None:
        await _pg_raw.fill_pending(self._url, table, n)

    async def analyze(self, table: str) -> None:
        await _pg_raw.analyze(self._url, table)

    async def keep_unanalyzed(self, table: str) -> None:
        await _pg_raw.keep_unanalyzed(self._url, table)

    async def drain_floor(self, table: str, n: int, *, batch: int) -> float:
        # One commit per job runs 10 connections (like a pool of 10); batched runs one
        # loop, so at most 10 jobs are leased at a time, as in a worker with pool 10.
        loops = 10 if batch == 1 else 1
        return await _pg_raw.drain(self._url, table, n, batch=batch, loops=loops)

    async def fill_finished(self, table: str, n: int) -> None:
        await _pg_raw.fill_finished(self._url, table, n)

    async def describe(self) -> str:
        version = await _pg_raw.server_version(self._url)
        return f"PostgreSQL {version} (local, synchronous_commit=on), database {self._database}"

    async def teardown(self) -> None:
        return None
