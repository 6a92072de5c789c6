"""Raw stdlib-sqlite3 floors and bulk loads, on the store's own table and indexes.

The table is created by opening a `SQLiteStore` on the file once, so the floors run
against exactly the schema the store uses; everything after that is plain sqlite3 on
one connection with the store's settings (WAL, `synchronous=NORMAL`, `BEGIN IMMEDIATE`).
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

TOPIC = "bench"
_COLUMNS = (
    "id, topic, payload, status, run_at, locked_until, lock_token, retries, max_retries,"
    " last_error, created, updated"
)
_INSERT = (
    f"INSERT INTO jobs ({_COLUMNS}) VALUES (?, ?, ?, 'pending', ?, NULL, NULL, 0, 3, NULL, ?, ?)"
)
_CLAIM = f"""
UPDATE jobs SET status = 'processing', locked_until = ?, lock_token = lower(hex(randomblob(16))),
    updated = ?
WHERE id IN (
    SELECT id FROM jobs WHERE status = 'pending' AND run_at <= ? AND topic IN (?)
    ORDER BY priority DESC, run_at, id LIMIT ?
) AND status || '' = 'pending'
RETURNING {_COLUMNS}
"""
_COMPLETE = """
UPDATE jobs SET status = 'completed', locked_until = NULL, lock_token = NULL, updated = ?
WHERE id = ? AND status = 'processing' AND lock_token IS ?
"""


def stamp(value: datetime) -> str:
    """The store's fixed-width UTC text form of a time."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def connect(path: str) -> sqlite3.Connection:
    """A connection set up as the store sets up its own."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _row(i: int, now: str | None = None) -> tuple[str, str, str, str, str, str]:
    """A new job's values; batches pass one `now` for all their rows."""
    now = now or stamp(datetime.now(UTC))
    return (str(uuid.uuid4()), TOPIC, json.dumps({"i": i}, separators=(",", ":")), now, now, now)


class RawInserter:
    """One sqlite3 connection inserting raw rows; each call says how long it took.

    W1 alternates calls of this with the store's own enqueues, so the floor and the store
    see the same machine instead of one after the other.
    """

    def __init__(self, path: str) -> None:
        self._conn = connect(path)

    def one_by_one(self, first: int, count: int) -> float:
        """Seconds to insert jobs `first`... one transaction each."""
        conn = self._conn
        started = time.perf_counter()
        for i in range(first, first + count):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(_INSERT, _row(i))
            conn.execute("COMMIT")
        return time.perf_counter() - started

    def in_batches(self, first: int, count: int, chunk: int) -> float:
        """Seconds to insert jobs `first`... in transactions of `chunk` (one executemany each)."""
        conn, end = self._conn, first + count
        started = time.perf_counter()
        for start in range(first, end, chunk):
            now = stamp(datetime.now(UTC))
            rows = [_row(i, now) for i in range(start, min(start + chunk, end))]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_INSERT, rows)
            conn.execute("COMMIT")
        return time.perf_counter() - started

    def close(self) -> None:
        self._conn.close()


def fill_pending(path: str, n: int) -> None:
    """Queue `n` due jobs in one transaction (setup, not timed)."""
    conn = connect(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_INSERT, [_row(i) for i in range(n)])
        conn.execute("COMMIT")
    finally:
        conn.close()


def _claim(conn: sqlite3.Connection, limit: int) -> list[Any]:
    now = datetime.now(UTC)
    conn.execute("BEGIN IMMEDIATE")
    rows = conn.execute(
        _CLAIM, (stamp(now + timedelta(minutes=5)), stamp(now), stamp(now), TOPIC, limit)
    ).fetchall()
    conn.execute("COMMIT")
    return rows


def drain(path: str, n: int, batch: int) -> float:
    """Jobs/s draining `n` queued jobs: claim `batch` per statement, then complete them
    all in one transaction (batch 1: one commit per claim and one per completion)."""
    conn = connect(path)
    try:
        done = 0
        started = time.perf_counter()
        while done < n:
            rows = _claim(conn, batch)
            if not rows:
                break
            payloads = [json.loads(row[2]) for row in rows]  # what a handler would get
            assert len(payloads) == len(rows)
            now = stamp(datetime.now(UTC))
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_COMPLETE, [(now, row[0], row[6]) for row in rows])
            conn.execute("COMMIT")
            done += len(rows)
        elapsed = time.perf_counter() - started
        if done != n:
            raise RuntimeError(f"raw sqlite drain finished {done} of {n} jobs")
        return n / elapsed
    finally:
        conn.close()


def fill_finished(path: str, n: int) -> None:
    """Add `n` completed jobs with one INSERT ... SELECT over a counter (setup only)."""
    if n <= 0:
        return
    conn = connect(path)
    try:
        old = "2020-01-01T00:00:00.000000Z"
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            f"""
            WITH RECURSIVE counter(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM counter WHERE i < ?)
            INSERT INTO jobs ({_COLUMNS})
            SELECT lower(hex(randomblob(16))), ?, '{{}}', 'completed', ?, NULL, NULL, 0, 3, NULL,
                   ?, ?
            FROM counter
            """,
            (n, TOPIC, old, old, old),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
