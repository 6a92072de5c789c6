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
from collections.abc import Iterator, Sequence
from typing import Any

Params = Sequence[Any]


class Session:
    """One store call's statements on the sqlite3 connection itself (its own
    transaction control is off): write transactions and plain SQL."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        """A `BEGIN IMMEDIATE` transaction: commits on success, rolls back on error."""
        cursor = self._cursor
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield
            cursor.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                cursor.execute("ROLLBACK")
            raise

    def fetch(self, sql: str, params: Params) -> list[Any]:
        """Run one statement; its rows."""
        return self._cursor.execute(sql, params).fetchall()

    def change(self, sql: str, params: Params) -> int:
        """Run one statement; the rows it changed."""
        return self._cursor.execute(sql, params).rowcount

    def change_many(self, sql: str, rows: Sequence[Params]) -> int:
        """Run one statement per parameter row, in order; the rows changed in total."""
        return self._cursor.executemany(sql, rows).rowcount
