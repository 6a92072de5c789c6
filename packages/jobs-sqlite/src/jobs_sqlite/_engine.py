"""SQLAlchemy engines on a SQLite file, set up so writers never deadlock.

The sqlite3 driver's own transaction control is switched off and SQLAlchemy's `begin`
event emits the BEGIN instead: `BEGIN IMMEDIATE` unless the connection asked for a
read-only transaction. A deferred transaction that reads and then writes must upgrade
its lock, and SQLite answers a contended upgrade with SQLITE_BUSY at once, without
waiting in the busy handler (in WAL mode the snapshot may even be stale, which is not
retryable). `BEGIN IMMEDIATE` takes the write lock up front, where the busy timeout
applies. Every new connection gets WAL, the busy timeout and `synchronous=NORMAL`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import sqlalchemy
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import ConnectionPoolEntry

from jobs_core import InvalidOptions
from jobs_sqlite._errors import is_busy

#: Default time a statement waits for another connection's lock before giving up.
DEFAULT_BUSY_TIMEOUT: Final = timedelta(seconds=10)
_BEGIN_KEY: Final = "jobs_sqlite.begin"
_WRITE: Final = "BEGIN IMMEDIATE"
_READ: Final = "BEGIN"
_SYNCHRONOUS: Final = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})


def parse_url(url: str) -> tuple[str, bool]:
    """`sqlite:///relative.db`, `sqlite:////abs/path.db`, `?mode=ro` -> (path, read_only)."""
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError as exc:
        raise InvalidOptions(f"not a SQLite store URL: {url!r} ({exc})") from exc
    if parsed.get_backend_name() != "sqlite" or parsed.host or parsed.username or parsed.port:
        raise InvalidOptions(
            f"a SQLite store URL looks like sqlite:///relative/jobs.db or"
            f" sqlite:////absolute/jobs.db, got {url!r}"
        )
    options = dict(parsed.query)
    mode = options.pop("mode", "rwc")
    if options or mode not in ("rwc", "ro"):
        raise InvalidOptions(f"unknown SQLite store URL options in {url!r} (only mode=ro)")
    path = parsed.database or ":memory:"
    return path, mode == "ro"


def create_engine(
    path: str | Path,
    *,
    read_only: bool = False,
    busy_timeout: timedelta = DEFAULT_BUSY_TIMEOUT,
    synchronous: str = "NORMAL",
    **kwargs: Any,
) -> Engine:
    """A SQLAlchemy engine on the SQLite file at `path`, configured as the store uses it.

    Use it for your own connections when you enqueue inside your own transactions
    (`SQLiteStore.insert_with`): its transactions begin with `BEGIN IMMEDIATE`.
    Extra keyword arguments go to `sqlalchemy.create_engine`.
    """
    target = str(path)
    memory = target in ("", ":memory:")
    if read_only and memory:
        raise InvalidOptions("an in-memory SQLite database cannot be opened read-only")
    if read_only:
        uri = Path(target).absolute().as_uri()
        engine = sqlalchemy.create_engine(f"sqlite+pysqlite:///{uri}?mode=ro&uri=true", **kwargs)
    else:
        engine = sqlalchemy.create_engine(f"sqlite+pysqlite:///{target}", **kwargs)
    configure_engine(
        engine, busy_timeout=busy_timeout, synchronous=synchronous, wal=not memory and not read_only
    )
    return engine


def configure_engine(
    engine: Engine,
    *,
    busy_timeout: timedelta = DEFAULT_BUSY_TIMEOUT,
    synchronous: str = "NORMAL",
    wal: bool = True,
) -> None:
    """Install the connect and begin hooks on an engine you built yourself."""
    if engine.dialect.name != "sqlite":
        raise InvalidOptions(f"expected a SQLite engine, got {engine.dialect.name}")
    if synchronous.upper() not in _SYNCHRONOUS:
        raise InvalidOptions(
            f"synchronous must be one of {sorted(_SYNCHRONOUS)}, got {synchronous!r}"
        )
    if busy_timeout <= timedelta(0):
        raise InvalidOptions(f"busy_timeout must be positive, got {busy_timeout}")
    timeout_ms = int(busy_timeout.total_seconds() * 1000)
    level = synchronous.upper()

    def on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # Take transaction control away from the driver; `on_begin` emits BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            if wal:
                _enable_wal(cursor, busy_timeout)
            cursor.execute(f"PRAGMA synchronous = {level}")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    def on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(connection.info.pop(_BEGIN_KEY, _WRITE))

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)


def _enable_wal(cursor: sqlite3.Cursor, patience: timedelta) -> None:
    """Switch to WAL. Changing the mode needs an exclusive lock, and the busy handler is
    not always consulted for it, so a contended switch is retried here."""
    deadline = time.monotonic() + patience.total_seconds()
    delay = 0.005
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


@contextlib.contextmanager
def write_transaction(connection: Connection) -> Iterator[Connection]:
    """A transaction that starts with `BEGIN IMMEDIATE`; commits on success."""
    connection.info[_BEGIN_KEY] = _WRITE
    with connection.begin():
        yield connection


@contextlib.contextmanager
def read_transaction(connection: Connection) -> Iterator[Connection]:
    """A deferred (read-only) transaction: a consistent snapshot, no write lock.

    Never write in it: that would be the deferred read->write upgrade `BEGIN IMMEDIATE`
    exists to avoid.
    """
    connection.info[_BEGIN_KEY] = _READ
    with connection.begin():
        yield connection
