"""How the hot operations reach SQLite: straight on the sqlite3 connection, or through
SQLAlchemy when someone is listening.

Claims, guarded updates and inserts run hundreds of times a second. Going through
SQLAlchemy's execution machinery costs several times what sqlite3 itself spends, so
these run their fixed SQL text on the store connection's own sqlite3 cursor, with the
same `BEGIN IMMEDIATE` ... `COMMIT` SQLAlchemy's begin hook would emit. When the
store's engine has statement or transaction listeners (tracing, tests), the same SQL
text goes through SQLAlchemy instead, so the listeners see every statement.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, Engine

from jobs_sqlite._engine import write_transaction

Params = Sequence[Any]


class Session(Protocol):
    """One store call's access to the database: write transactions and plain SQL."""

    def write(self) -> contextlib.AbstractContextManager[None]:
        """A `BEGIN IMMEDIATE` transaction: commits on success, rolls back on error."""
        ...

    def fetch(self, sql: str, params: Params) -> Sequence[Sequence[Any]]:
        """Run one statement; its rows."""
        ...

    def change(self, sql: str, params: Params) -> int:
        """Run one statement; the rows it changed."""
        ...

    def change_many(self, sql: str, rows: Sequence[Params]) -> int:
        """Run one statement per parameter row, in order; the rows changed in total."""
        ...


class RawSession:
    """Statements on the sqlite3 connection itself (its transaction control is off)."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
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
        return self._cursor.execute(sql, params).fetchall()

    def change(self, sql: str, params: Params) -> int:
        return self._cursor.execute(sql, params).rowcount

    def change_many(self, sql: str, rows: Sequence[Params]) -> int:
        return self._cursor.executemany(sql, rows).rowcount


class TracedSession:
    """The same statements through SQLAlchemy, so the engine's listeners see them."""

    __slots__ = ("_connection",)

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with write_transaction(self._connection):
            yield

    def fetch(self, sql: str, params: Params) -> list[Any]:
        return list(self._connection.exec_driver_sql(sql, tuple(params)).all())

    def change(self, sql: str, params: Params) -> int:
        return self._connection.exec_driver_sql(sql, tuple(params)).rowcount

    def change_many(self, sql: str, rows: Sequence[Params]) -> int:
        return self._connection.exec_driver_sql(sql, [tuple(row) for row in rows]).rowcount


def is_traced(engine: Engine) -> bool:
    """Whether anyone listens to the engine's statements or transaction ends."""
    events = engine.dispatch
    return bool(
        events.before_cursor_execute
        or events.after_cursor_execute
        or events.before_execute
        or events.after_execute
        or events.commit
        or events.rollback
    )
