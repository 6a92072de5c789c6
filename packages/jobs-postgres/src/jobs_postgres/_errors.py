"""Driver and SQLAlchemy exceptions in, `jobs_core` errors out, at the store's boundary.

"The server cannot be reached right now" (refused, dropped, restarting, shutting
down, out of connections) becomes `StoreUnavailable`, which callers retry; anything
else the database says becomes `StoreError`. The cause is always kept (`from exc`).

`lost_connection` says more for the hot pool: whether a statement's connection died,
and whether the statement can have reached the server, which decides if it may run
again on a fresh connection (see `_pool.Retry`).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import asyncpg
from sqlalchemy import exc as sa_exc

from jobs_core import StoreError, StoreUnavailable

#: SQLSTATEs meaning "try again later": admin/crash shutdown, cannot connect now,
#: too many connections, out of resources, serialization failure, deadlock.
_UNAVAILABLE_STATES: Final = frozenset({"57P01", "57P02", "57P03", "53300", "53000", "57P05"})
_UNAVAILABLE_CLASSES: Final = ("08",)
#: SQLSTATE classes a server sends as it drops the connection: connection exception,
#: operator intervention (shutdown, terminated backend).
_CONNECTION_LOST_CLASSES: Final = ("08", "57P")


class Delivery(enum.Enum):
    """How far a statement got before its connection turned out to be dead."""

    #: The connection was found dead before the statement was written: the server never
    #: saw it, so running it again is safe whatever it does.
    UNSENT = "unsent"
    #: The connection died after the statement was written: it may have committed.
    UNKNOWN = "unknown"


def lost_connection(error: BaseException) -> Delivery | None:
    """Whether `error` means the statement's connection is dead, and how far it got.

    asyncpg has no class of its own for "this connection already received the server's
    FATAL": an idle pooled connection whose backend was terminated raises
    `InternalClientError("cannot switch to state 12; another operation (2) is in
    progress")` (or "... protocol is in the \"failed\" state", or "not connected") from
    its state check, which runs before anything is written; and `InterfaceError("...
    connection is closed")` from its closed check, likewise before writing. Those two
    classes also carry unrelated errors (protocol bugs, concurrent use of one
    connection), so for them, and only for them, the message decides: these are the
    fixed texts of those checks (asyncpg 0.32; tests/postgres/test_dropped_connections.py
    reproduces the first with `pg_terminate_backend`).
    """
    if isinstance(error, asyncpg.InternalClientError):
        text = str(error)
        dead = text.startswith("cannot switch to state") or text == "not connected"
        return Delivery.UNSENT if dead else None
    if isinstance(error, asyncpg.InterfaceError):
        return Delivery.UNSENT if str(error).endswith("connection is closed") else None
    if isinstance(error, TimeoutError):
        return None  # slow, not known dead
    if isinstance(error, asyncpg.ConnectionDoesNotExistError | OSError):
        return Delivery.UNKNOWN  # the link broke while the statement was out
    code = sqlstate(error)
    if isinstance(error, asyncpg.PostgresError) and code is not None:
        return Delivery.UNKNOWN if code.startswith(_CONNECTION_LOST_CLASSES) else None
    return None


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
    if lost_connection(error) is not None:
        return True
    code = sqlstate(error)
    return code is not None and (
        code in _UNAVAILABLE_STATES or code.startswith(_UNAVAILABLE_CLASSES)
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
