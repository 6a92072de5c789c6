"""The hot-path pool: reuse, a connection whose call failed is never reused, waiting
for a free connection is bounded, closing closes everything."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from jobs_postgres._pool import HotPool, PoolClosed


async def test_an_idle_connection_is_reused(pg_url: str) -> None:
    pool = HotPool(pg_url, size=2, timeout=1.0)
    try:
        async with pool.connection() as first:
            pid = first.get_server_pid()
        async with pool.connection() as second:
            assert second.get_server_pid() == pid
        assert (pool.in_use, pool.idle) == (0, 1)
    finally:
        await pool.close()


async def test_a_connection_whose_call_failed_is_closed_not_reused(pg_url: str) -> None:
    pool = HotPool(pg_url, size=1, timeout=1.0)
    try:
        seen: list[asyncpg.Connection] = []

        async def divide_by_zero() -> None:
            async with pool.connection() as conn:
                seen.append(conn)
                await conn.fetchval("SELECT 1 / 0")

        with pytest.raises(asyncpg.DivisionByZeroError):
            await divide_by_zero()
        (broken,) = seen
        assert broken.is_closed()
        async with pool.connection() as conn:
            assert conn is not broken
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await pool.close()


async def test_a_cancelled_statement_does_not_poison_the_next_caller(pg_url: str) -> None:
    pool = HotPool(pg_url, size=1, timeout=5.0)

    async def sleep_on_server() -> None:
        async with pool.connection() as conn:
            await conn.execute("SELECT pg_sleep(5)")

    try:
        task = asyncio.create_task(sleep_on_server())
        while pool.in_use == 0:
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with pool.connection() as conn:
            assert await conn.fetchval("SELECT 2") == 2
    finally:
        await pool.close()


async def test_waiting_for_a_connection_is_bounded(pg_url: str) -> None:
    pool = HotPool(pg_url, size=1, timeout=0.1)
    try:
        async with pool.connection():
            with pytest.raises(TimeoutError):
                async with pool.connection():
                    pass
        assert pool.in_use == 0
        async with pool.connection() as conn:  # the slot came back
            assert await conn.fetchval("SELECT 3") == 3
    finally:
        await pool.close()


async def test_close_closes_idle_connections_and_those_still_in_use(pg_url: str) -> None:
    pool = HotPool(pg_url, size=2, timeout=1.0)
    async with pool.connection() as busy:
        async with pool.connection() as idle:  # a second connection, idle after this
            pass
        await pool.close()
        assert idle.is_closed()
        assert not busy.is_closed()
    assert busy.is_closed()
    with pytest.raises(PoolClosed):
        async with pool.connection():
            pass
