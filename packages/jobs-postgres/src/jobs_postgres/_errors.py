"""Driver and SQLAlchemy exceptions in, `jobs_core` errors out, at the store's boundary.

"The server cannot be reached right now" (refused, dropped, restarting, shutting
down, out of connections) becomes `StoreUnavailable`, which callers retry; anything
else the database says becomes `StoreError`. The cause is always kept (`from exc`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from sqlalchemy import exc as sa_exc

from jobs_core import StoreError, StoreUnavailable

#: SQLSTATEs meaning "try again later": admin/crash shutdown, cannot connect now,
#: too many connections, out of resources, serialization failure, deadlock.
_UNAVAILABLE_STATES: Final = frozenset({"57P01", "57P02", "57P03", "53300", "53000", "57P05"})
_UNAVAILABLE_CLASSES: Final = ("08",)


def sqlstate(error: BaseException | None) -> str | None:
    """The SQLSTATE a driver error carries, if any (asyncpg and psycopg both say `sqlstate`)."""
    code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return code if isinstance(code, str) else None


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` means the server is unreachable or going away (retry later)."""
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if isinstance(error, sa_exc.InterfaceError):
            return True
        if isinstance(error, sa_exc.OperationalError) and sqlstate(error.orig) is None:
            return True  # failed at the connection level, before the server said anything
        return is_unavailable(error.orig) if error.orig is not None else False
    if isinstance(error, OSError | TimeoutError | sa_exc.TimeoutError):
        return True
    code = sqlstate(error)
    if code is not None and (code in _UNAVAILABLE_STATES or code.startswith(_UNAVAILABLE_CLASSES)):
        return True
    name = type(error).__name__
    # asyncpg's own names for a connection that is gone (no SQLSTATE attached).
    return name in {"ConnectionDoesNotExistError", "ConnectionFailureError"} or (
        "connection is closed" in str(error) and "Interface" in name
    )


@contextmanager
def translated(action: str) -> Iterator[None]:
    """Run a block, turning database failures into `StoreUnavailable` / `StoreError`."""
    try:
        yield
    except (StoreError, asyncio.CancelledError):
        raise
    except (TimeoutError, sa_exc.SQLAlchemyError, OSError) as exc:
        if is_unavailable(exc):
            raise StoreUnavailable(f"PostgreSQL unreachable while {action}: {_short(exc)}") from exc
        raise StoreError(f"PostgreSQL failed while {action}: {_short(exc)}") from exc
    except Exception as exc:
        # Raw driver errors (asyncpg's, on the LISTEN connection) arrive unwrapped.
        if type(exc).__module__.split(".", 1)[0] not in {"asyncpg", "psycopg"}:
            raise
        if is_unavailable(exc):
            raise StoreUnavailable(f"PostgreSQL unreachable while {action}: {_short(exc)}") from exc
        raise StoreError(f"PostgreSQL failed while {action}: {_short(exc)}") from exc


def _short(exc: BaseException) -> str:
    """The first line of the error, without SQLAlchemy's SQL echo and background link."""
    cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}"
