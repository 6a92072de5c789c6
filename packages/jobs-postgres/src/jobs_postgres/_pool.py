"""The connections that run the hot path (enqueue, claim, guarded update, lease renewal).

These statements go straight to asyncpg, prepared and cached per connection, because
each pass through SQLAlchemy's async layer (greenlet hop, pool checkout, pre-ping,
BEGIN/COMMIT round trips) cost 1-3 ms of client CPU per call where the driver alone
costs 0.2-0.3 ms (measured in docs/benchmarks.md). SQLAlchemy still defines the table,
creates it, and runs the rare reads and the caller's transactional enqueue.

The pool is deliberately small. asyncpg's own pool spends 60-100 us per checkout (a
task per release, two timers, a reset query we do not need), a fifth of a whole
enqueue here. This one hands out the most recently used idle connection without
suspending, arms a timer only when it has to wait for one, and never reuses a
connection whose call ended in an error (a dropped link, a cancelled statement): it is
closed, and the next caller opens a fresh one.

A connection can also be dead while it waits idle (its backend was terminated, the
server restarted) without the pool being able to tell. `run` gives a statement that
failed for that reason one more attempt on a fresh connection, when its `Retry` says
that is safe.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Final, TypeVar

import asyncpg

from jobs_core import StoreError
from jobs_postgres._errors import Delivery, lost_connection
from jobs_postgres._rows import dumps

T = TypeVar("T")
log = logging.getLogger("jobs_postgres")

_CONNECT_TIMEOUT: Final = 10.0


class PoolClosed(StoreError):
    """The store was closed while a call waited for a connection."""


@dataclass(frozen=True, slots=True)
class Retry:
    """When a statement may run once more, on a fresh connection, after its connection died."""

    #: The connection was found dead before the statement was written (the server never
    #: saw it): safe for any statement.
    unsent: bool
    #: The connection died after the statement was written, so it may have committed:
    #: safe only for a statement whose repetition is harmless and whose second answer
    #: the caller can trust (or check).
    unknown: bool

    def allows(self, delivery: Delivery) -> bool:
        """Whether a statement that failed this way may run again."""
        return self.unsent if delivery is Delivery.UNSENT else self.unknown


#: A statement on a connection; `repeat` is true on the second attempt.
Statement = Callable[[asyncpg.Connection, bool], Awaitable[T]]


class HotPool:
    """Up to `size` asyncpg connections, opened on demand and reused newest first."""

    def __init__(self, url: str, *, size: int, timeout: float) -> None:
        self._url = url
        self._timeout = timeout
        self._slots = asyncio.Semaphore(size)  # connections in use or being opened
        self._idle: list[asyncpg.Connection] = []
        self._in_use = 0
        self._closed = False

    def connection(self, *, fresh: bool = False) -> _Lease:
        """`async with pool.connection() as conn:`; waits up to the pool timeout.

        `fresh` opens a new connection even when idle ones wait: after one connection
        was found dead, the others that idled beside it may be dead too.
        """
        return _Lease(self, fresh=fresh)

    async def run(self, statement: Statement[T], retry: Retry) -> T:
        """Run `statement` on a pooled connection, once more on a fresh one if `retry` allows.

        Only a failure of the statement itself counts, and only when it says the
        connection is dead (`lost_connection`); failing to open a connection is the
        server being unreachable, which a second attempt right away would not change.
        """
        async with self.connection() as conn:
            try:
                return await statement(conn, False)
            except Exception as exc:
                delivery = lost_connection(exc)
                if delivery is None or not retry.allows(delivery):
                    raise
                conn.terminate()  # dead: the lease sees it closed and drops it
                log.debug("connection dead (%s: %s); retrying once", delivery.value, exc)
        async with self.connection(fresh=True) as conn:
            return await statement(conn, True)

    @property
    def in_use(self) -> int:
        """Connections handed out right now."""
        return self._in_use

    @property
    def idle(self) -> int:
        """Open connections waiting in the pool."""
        return len(self._idle)

    async def close(self) -> None:
        """Close the idle connections; those in use close when they come back."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            try:
                await asyncio.wait_for(conn.close(), timeout=1.0)
            except Exception:  # noqa: BLE001 - closing anyway
                conn.terminate()

    async def _take(self, *, fresh: bool) -> asyncpg.Connection:
        if self._closed:
            raise PoolClosed("the store is closed")
        if self._slots.locked():
            async with asyncio.timeout(self._timeout):
                await self._slots.acquire()
        else:
            await self._slots.acquire()  # free: returns without suspending
        self._in_use += 1
        try:
            while self._idle and not fresh:
                conn = self._idle.pop()
                if not conn.is_closed():
                    return conn
            return await _connect(self._url)
        except BaseException:
            self._give_back_slot()
            raise

    def _put(self, conn: asyncpg.Connection, *, healthy: bool) -> None:
        self._give_back_slot()
        if healthy and not self._closed and not conn.is_closed():
            self._idle.append(conn)
        else:
            conn.terminate()

    def _give_back_slot(self) -> None:
        self._in_use -= 1
        self._slots.release()


class _Lease:
    """One checkout: the connection while the block runs, back (or closed) after."""

    __slots__ = ("_conn", "_fresh", "_pool")

    def __init__(self, pool: HotPool, *, fresh: bool) -> None:
        self._pool = pool
        self._fresh = fresh
        self._conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> asyncpg.Connection:
        self._conn = await self._pool._take(fresh=self._fresh)
        return self._conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            healthy = exc_type is None and not conn.is_closed() and not conn.is_in_transaction()
            self._pool._put(conn, healthy=healthy)


async def _connect(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(
        url,
        timeout=_CONNECT_TIMEOUT,
        server_settings={"application_name": "jobs_postgres"},
    )
    try:
        # Payloads in and out as Python values, in the core's canonical JSON text.
        await conn.set_type_codec("jsonb", encoder=dumps, decoder=json.loads, schema="pg_catalog")
    except BaseException:
        conn.terminate()
        raise
    return conn
