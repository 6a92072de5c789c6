"""Raw asyncpg floors and bulk loads, on tables created by `PostgresStore` itself.

Each table is created by the store (same columns, checks and partial indexes); the
floors then use asyncpg directly with prepared statements and no framework at all.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

TOPIC = "bench"
_COLUMNS = (
    "id, topic, payload, status, run_at, locked_until, lock_token, retries, max_retries,"
    " last_error, created, updated"
)


def _insert(table: str) -> str:
    return (
        f"INSERT INTO {table} ({_COLUMNS}) VALUES"
        " ($1, $2, $3::jsonb, 'pending', $4, NULL, NULL, 0, 3, NULL, $4, $4)"
    )


def _claim(table: str) -> str:
    """The store's claim statement (`jobs_postgres._statements`), written out."""
    return f"""
    WITH picked AS (
        SELECT c.id FROM unnest($2::text[]) AS w(topic) CROSS JOIN LATERAL (
            SELECT id, priority, run_at FROM {table}
            WHERE status = 'pending' AND topic = w.topic AND run_at <= $1
            ORDER BY priority DESC, run_at, id LIMIT (SELECT $3::bigint) FOR UPDATE SKIP LOCKED
        ) AS c
        ORDER BY c.priority DESC, c.run_at, c.id LIMIT $3
    )
    UPDATE {table} AS t SET status = 'processing', locked_until = $4,
        lock_token = replace(gen_random_uuid()::text, '-', ''), updated = $1
    WHERE t.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING t.*
    """


def _complete_one(table: str) -> str:
    return f"""
    UPDATE {table} SET status = 'completed', locked_until = NULL, lock_token = NULL, updated = $1
    WHERE id = $2 AND status = 'processing' AND lock_token = $3
    """


def _complete_many(table: str) -> str:
    return f"""
    UPDATE {table} AS t SET status = 'completed', locked_until = NULL, lock_token = NULL,
        updated = $1
    FROM unnest($2::uuid[], $3::text[]) AS v(id, token)
    WHERE t.id = v.id AND t.status = 'processing' AND t.lock_token = v.token
    """


def with_database(url: str, database: str) -> str:
    """`url` pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, "", ""))


async def recreate_database(url: str, database: str) -> None:
    """Drop (forcing out sessions) and create `database` on the server of `url`."""
    conn = await asyncpg.connect(with_database(url, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


async def server_version(url: str) -> str:
    """The server's `SHOW server_version`."""
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def _row(i: int, now: datetime | None = None) -> tuple[Any, ...]:
    """A new job's values; batches pass one `now` for all their rows."""
    now = now or datetime.now(UTC)
    return (uuid.uuid4(), TOPIC, json.dumps({"i": i}, separators=(",", ":")), now)


class RawInserter:
    """One asyncpg connection inserting raw rows into `table`; each call says how long it took.

    W1 alternates calls of this with the store's own enqueues, so the floor and the store
    see the same machine (disk flushes, checkpoints, neighbours) instead of one after
    the other.
    """

    def __init__(self, conn: asyncpg.Connection, table: str) -> None:
        self._conn = conn
        self._sql = _insert(table)

    @classmethod
    async def connect(cls, url: str, table: str) -> RawInserter:
        return cls(await asyncpg.connect(url), table)

    async def one_by_one(self, first: int, count: int) -> float:
        """Seconds to insert jobs `first`... one autocommitted prepared INSERT each."""
        statement = await self._conn.prepare(self._sql)
        started = time.perf_counter()
        for i in range(first, first + count):
            await statement.fetch(*_row(i))
        return time.perf_counter() - started

    async def in_batches(self, first: int, count: int, chunk: int) -> float:
        """Seconds to insert jobs `first`... in transactions of `chunk` (one executemany each)."""
        end = first + count
        started = time.perf_counter()
        for start in range(first, end, chunk):
            now = datetime.now(UTC)
            rows = [_row(i, now) for i in range(start, min(start + chunk, end))]
            async with self._conn.transaction():
                await self._conn.executemany(self._sql, rows)
        return time.perf_counter() - started

    async def close(self) -> None:
        await self._conn.close()


async def fill_pending(url: str, table: str, n: int) -> None:
    """Queue `n` due jobs and ANALYZE (setup, not timed)."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.executemany(_insert(table), [_row(i) for i in range(n)])
    finally:
        await conn.close()
    await analyze(url, table)


async def analyze(url: str, table: str) -> None:
    """ANALYZE `table`, so the planner knows how many jobs are pending."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"ANALYZE {table}")
    finally:
        await conn.close()


async def keep_unanalyzed(url: str, table: str) -> None:
    """Keep autovacuum off `table`, so it stays without statistics for the whole run."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    finally:
        await conn.close()


async def _drain_loop(url: str, table: str, batch: int, counter: list[int]) -> None:
    conn = await asyncpg.connect(url)
    try:
        claim = await conn.prepare(_claim(table))
        complete_one = await conn.prepare(_complete_one(table))
        complete_many = await conn.prepare(_complete_many(table))
        while True:
            now = datetime.now(UTC)
            rows = await claim.fetch(now, [TOPIC], batch, now + timedelta(minutes=5))
            if not rows:
                return
            done = datetime.now(UTC)
            if len(rows) == 1:
                await complete_one.fetch(done, rows[0]["id"], rows[0]["lock_token"])
            else:
                ids = [row["id"] for row in rows]
                tokens = [row["lock_token"] for row in rows]
                await complete_many.fetch(done, ids, tokens)
            counter[0] += len(rows)
    finally:
        await conn.close()


async def drain(url: str, table: str, n: int, *, batch: int, loops: int) -> float:
    """Jobs/s draining `n` queued jobs with `loops` connections, each claiming `batch`
    per statement and completing them with one statement (each its own commit)."""
    counter = [0]
    started = time.perf_counter()
    await asyncio.gather(*(_drain_loop(url, table, batch, counter) for _ in range(loops)))
    elapsed = time.perf_counter() - started
    if counter[0] != n:
        raise RuntimeError(f"raw asyncpg drain finished {counter[0]} of {n} jobs")
    return n / elapsed


async def fill_finished(url: str, table: str, n: int) -> None:
    """Add `n` completed jobs with one INSERT ... SELECT generate_series (setup only)."""
    conn = await asyncpg.connect(url)
    try:
        if n > 0:
            await conn.execute(
                f"""
                INSERT INTO {table} ({_COLUMNS})
                SELECT gen_random_uuid(), $1, '{{}}'::jsonb, 'completed',
                       now() - interval '1 day', NULL, NULL, 0, 3, NULL,
                       now() - interval '1 day', now() - interval '1 day'
                FROM generate_series(1, $2)
                """,
                TOPIC,
                n,
            )
        await conn.execute(f"VACUUM ANALYZE {table}")
    finally:
        await conn.close()
