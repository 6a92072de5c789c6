"""The asyncpg pool that runs the hot path (enqueue, claim, guarded update).

These statements go straight to asyncpg, prepared and cached per connection, because
each pass through SQLAlchemy's async layer (greenlet hop, pool checkout, pre-ping,
BEGIN/COMMIT round trips) cost 1-3 ms of client CPU per call where the driver alone
costs 0.2-0.3 ms (measured in docs/benchmarks.md). SQLAlchemy still defines the table,
creates it, and runs the rare reads and the caller's transactional enqueue.
"""

from __future__ import annotations

import json
from typing import Final

import asyncpg

from jobs_postgres._rows import dumps

_CONNECT_TIMEOUT: Final = 10.0


async def _setup(conn: asyncpg.Connection) -> None:
    """Payloads in and out as Python values, in the core's canonical JSON text."""
    await conn.set_type_codec("jsonb", encoder=dumps, decoder=json.loads, schema="pg_catalog")


async def _reset(conn: asyncpg.Connection) -> None:
    """Undo only what our statements could leave behind: an open transaction.

    asyncpg's default reset sends a round trip (UNLISTEN, RESET ALL, ...) on every
    release; these connections never LISTEN, SET or hold advisory locks.
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(url: str, *, size: int) -> asyncpg.Pool:
    """A pool of up to `size` connections, opened on demand."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        url,
        min_size=0,
        max_size=size,
        init=_setup,
        reset=_reset,
        timeout=_CONNECT_TIMEOUT,
        server_settings={"application_name": "jobs_postgres"},
    )
    return pool
