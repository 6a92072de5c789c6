"""How the hot operations reach SQLite: straight on the sqlite3 connection.

Claims, guarded updates and inserts run hundreds of times a second. Going through
SQLAlchemy's execution machinery costs several times what sqlite3 itself spends, so
these run their fixed SQL text on the store connection's own sqlite3 cursor, with the
same `BEGIN IMMEDIATE` ... `COMMIT` SQLAlchemy's begin hook emits for the other calls.
SQLAlchemy's statement events do not see them; to trace every statement SQLite runs,
use the sqlite3 connection's `set_trace_callback` (from the engine's `connect` event).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from types import TracebackType
from typing import Any

Params = Sequence[Any]


class Session:
    """One store call's statements on the sqlite3 connection itself (its own
    transaction control is off): write transactions and plain SQL.

    The connection has two ways of meeting a busy file. On the store thread it waits
    (the busy timeout) and checkpoints the WAL itself when it grows (SQLite's
    auto-checkpoint). Borrowed by an event loop's thread it must never block: it fails
    at once when another connection holds the lock, and leaves checkpoints (which
    flush the disk) to `checkpoint` on the store thread.
    """

    __slots__ = ("_auto_checkpoint", "_busy_timeout_ms", "_cursor", "_waits")

    def __init__(self, cursor: sqlite3.Cursor, busy_timeout_ms: int) -> None:
        self._cursor = cursor
        self._waits = True
        self._busy_timeout_ms = busy_timeout_ms
        self._auto_checkpoint = int(cursor.execute("PRAGMA wal_autocheckpoint").fetchone()[0])

    def wait_when_busy(self, waits: bool) -> None:
        """Switch between waiting (store thread) and failing at once (event loop)."""
        if waits is self._waits:
            return
        cursor = self._cursor
        if waits:
            cursor.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            cursor.execute(f"PRAGMA wal_autocheckpoint = {self._auto_checkpoint}")
        else:
            cursor.execute("PRAGMA busy_timeout = 0")
            cursor.execute("PRAGMA wal_autocheckpoint = 0")
        self._waits = waits

    def checkpoint(self) -> None:
        """Copy the WAL into the database as far as other connections' readers allow."""
        self._cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def write(self) -> _WriteTransaction:
        """A `BEGIN IMMEDIATE` transaction: commits on success, rolls back on error."""
        return _WriteTransaction(self._cursor)

    def read(self) -> _WriteTransaction:
        """A deferred transaction: one snapshot for the reads in it, no write lock."""
        return _WriteTransaction(self._cursor, "BEGIN")

    def fetch(self, sql: str, params: Params) -> list[Any]:
        """Run one statement; its rows."""
        return self._cursor.execute(sql, params).fetchall()

    def change(self, sql: str, params: Params) -> int:
        """Run one statement; the rows it changed."""
        return self._cursor.execute(sql, params).rowcount

    def change_many(self, sql: str, rows: Sequence[Params]) -> int:
        """Run one statement per parameter row, in order; the rows changed in total."""
        return self._cursor.executemany(sql, rows).rowcount


class _WriteTransaction:
    """`with session.write():` as a plain class (a generator-based context manager
    costs a microsecond, and this is on every hot call's path)."""

    __slots__ = ("_begin", "_cursor")

    def __init__(self, cursor: sqlite3.Cursor, begin: str = "BEGIN IMMEDIATE") -> None:
        self._cursor = cursor
        self._begin = begin

    def __enter__(self) -> None:
        self._cursor.execute(self._begin)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            try:
                self._cursor.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        else:
            self._rollback()

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._cursor.execute("ROLLBACK")
