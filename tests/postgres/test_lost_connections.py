"""Which driver errors mean "this pooled connection is dead", how far the statement got,
and the hot pool's one retry on a fresh connection (probe D2)."""

from __future__ import annotations

import asyncpg
import pytest

from jobs_core import StoreError, StoreUnavailable
from jobs_postgres._errors import Delivery, is_unavailable, lost_connection, translated
from jobs_postgres._pool import HotPool, Retry

# -- classification -------------------------------------------------------------------

#: Errors asyncpg raises before the statement leaves, because the connection is dead.
UNSENT = [
    asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
    asyncpg.InternalClientError('cannot switch to state 12; protocol is in the "failed" state'),
    asyncpg.InternalClientError("not connected"),
    asyncpg.InterfaceError("connection is closed"),
    asyncpg.InterfaceError("cannot perform operation: connection is closed"),
]
#: The connection died after the statement left: it may have committed.
UNKNOWN = [
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.CannotConnectNowError("the database system is shutting down"),
    ConnectionResetError(104, "Connection reset by peer"),
]
#: Not a dead connection: a bug, a misuse, or the database saying no.
NOT_LOST = [
    asyncpg.InternalClientError("unknown error in protocol implementation"),
    asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
    asyncpg.UniqueViolationError("duplicate key value violates unique constraint"),
    asyncpg.DivisionByZeroError("division by zero"),
]


@pytest.mark.parametrize("error", UNSENT, ids=str)
def test_a_connection_found_dead_before_sending_is_unavailable(error: Exception) -> None:
    assert lost_connection(error) is Delivery.UNSENT
    assert is_unavailable(error)
    with pytest.raises(StoreUnavailable), translated("inserting jobs"):
        raise error


@pytest.mark.parametrize("error", UNKNOWN, ids=str)
def test_a_connection_lost_mid_statement_is_unavailable(error: Exception) -> None:
    assert lost_connection(error) is Delivery.UNKNOWN
    assert is_unavailable(error)


@pytest.mark.parametrize("error", NOT_LOST, ids=str)
def test_other_driver_errors_are_not_a_lost_connection(error: Exception) -> None:
    assert lost_connection(error) is None
    assert not is_unavailable(error)
    with pytest.raises(StoreError) as raised, translated("inserting jobs"):
        raise error
    assert not isinstance(raised.value, StoreUnavailable)


# -- the pool's one retry -----------------------------------------------------------------


async def test_a_statement_found_dead_runs_again_on_a_fresh_connection(pg_url: str) -> None:
    pool = HotPool(pg_url, size=2, timeout=1.0)
    seen: list[asyncpg.Connection] = []

    async def call(conn: asyncpg.Connection, repeat: bool) -> int:
        seen.append(conn)
        if not repeat:
            raise asyncpg.InternalClientError(
                "cannot switch to state 12; another operation (2) is in progress"
            )
        return int(await conn.fetchval("SELECT 7"))

    try:
        assert await pool.run(call, Retry(unsent=True, unknown=False)) == 7
        first, second = seen
        assert first is not second
        assert first.is_closed()  # the dead one is discarded, not pooled
        assert pool.idle == 1
        assert pool.in_use == 0
    finally:
        await pool.close()


async def test_a_statement_is_not_repeated_where_its_policy_says_no(pg_url: str) -> None:
    pool = HotPool(pg_url, size=1, timeout=1.0)
    calls = 0

    async def call(conn: asyncpg.Connection, repeat: bool) -> None:
        nonlocal calls
        calls += 1
        raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle")

    try:
        with pytest.raises(asyncpg.ConnectionDoesNotExistError):
            await pool.run(call, Retry(unsent=True, unknown=False))
        assert calls == 1
        assert pool.in_use == 0
    finally:
        await pool.close()


async def test_a_second_failure_is_not_retried_again(pg_url: str) -> None:
    pool = HotPool(pg_url, size=1, timeout=1.0)
    calls = 0

    async def call(conn: asyncpg.Connection, repeat: bool) -> None:
        nonlocal calls
        calls += 1
        raise asyncpg.InterfaceError("connection is closed")

    try:
        with pytest.raises(asyncpg.InterfaceError):
            await pool.run(call, Retry(unsent=True, unknown=True))
        assert calls == 2
    finally:
        await pool.close()
