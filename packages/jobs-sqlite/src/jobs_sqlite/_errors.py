"""Translate sqlite3 / SQLAlchemy errors into `jobs_core` errors, naming the file.

"Retry later may help" (busy past the timeout, I/O trouble, a full disk) becomes
`StoreUnavailable`; everything a retry cannot fix (not a database, corrupt, read-only,
a constraint) becomes `StoreError`. This module imports nothing from its own package.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import exc as sa_exc

from jobs_core import StoreError, StoreUnavailable

# Primary SQLite result codes (https://www.sqlite.org/rescode.html).
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT = 5, 6, 8, 10, 11
_FULL, _CANTOPEN, _PROTOCOL, _CONSTRAINT, _NOTADB = 13, 14, 15, 19, 26

_UNAVAILABLE = {
    _BUSY: "the database is locked by another connection and stayed busy past the timeout",
    _LOCKED: "a table is locked by another statement of the same connection",
    _IOERR: "a disk I/O error occurred",
    _FULL: "the disk is full",
    _PROTOCOL: "the file-locking protocol failed (another process keeps changing the locks)",
}
_PERMANENT = {
    _READONLY: "the database is read-only (cannot write to it)",
    _CORRUPT: "the database file is corrupt (malformed)",
    _CANTOPEN: "the database file cannot be opened (missing folder or no permission)",
    _CONSTRAINT: "a constraint was violated",
    _NOTADB: "the file is not a SQLite database",
}


def driver_error(exc: BaseException) -> sqlite3.Error | None:
    """The sqlite3 exception behind `exc` (SQLAlchemy wraps it in `.orig`)."""
    if isinstance(exc, sqlite3.Error):
        return exc
    orig = getattr(exc, "orig", None)
    return orig if isinstance(orig, sqlite3.Error) else None


def is_busy(exc: BaseException) -> bool:
    """Whether `exc` is SQLITE_BUSY / SQLITE_LOCKED (another connection holds a lock)."""
    err = driver_error(exc)
    return err is not None and _primary(err) in (_BUSY, _LOCKED)


def translate(exc: BaseException, path: str, doing: str) -> StoreError:
    """The `jobs_core` error for a driver failure while `doing` something on `path`.

    Raise the result `from exc` so the traceback keeps the cause.
    """
    err = driver_error(exc)
    detail = str(err if err is not None else exc).strip() or type(exc).__name__
    code = _primary(err) if err is not None else None
    if code in _UNAVAILABLE:
        return StoreUnavailable(
            f"SQLite store {path}: {doing} failed: {_UNAVAILABLE[code]} ({detail})"
        )
    if code in _PERMANENT:
        return StoreError(f"SQLite store {path}: {doing} failed: {_PERMANENT[code]} ({detail})")
    if err is None and isinstance(exc, sa_exc.DisconnectionError):
        return StoreUnavailable(f"SQLite store {path}: {doing} failed: {detail}")
    return StoreError(f"SQLite store {path}: {doing} failed: {detail}")


def _primary(err: sqlite3.Error) -> int | None:
    code = getattr(err, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF
    text = str(err).lower()  # errors raised by the sqlite3 module itself carry no code
    if "locked" in text or "busy" in text:
        return _BUSY
    if "not a database" in text:
        return _NOTADB
    if "readonly" in text or "read-only" in text:
        return _READONLY
    return None
