"""`PostgresStore`: the `JobStore` port on PostgreSQL, for many workers on many hosts."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from jobs_core import MUTABLE_FIELDS, Job, JobNotFound, JobPage, JobQuery, JobStatus, JobUpdate
from jobs_postgres._errors import translated
from jobs_postgres._listen import listen_forever
from jobs_postgres._pool import HotPool
from jobs_postgres._rows import canonical_id, dumps, to_job, to_row
from jobs_postgres._schema import Schema
from jobs_postgres._statements import NOTIFY_TOPIC_BYTES, UPDATE_ARRAYS, statements
from jobs_postgres._url import StoreURL, check_name, parse_url

log = logging.getLogger("jobs_postgres")

#: Largest clock difference between this host and the server before we warn.
SKEW_WARNING: Final = timedelta(seconds=1)
#: Beyond this many distinct topics one transaction sends a single topic-less NOTIFY.
_MAX_TOPIC_NOTIFIES: Final = 8
_TEXT_ARRAY: Final = pg.ARRAY(sa.Text)
# Status constants are inlined as literals, not bound: only then can the planner match the
# partial indexes (`WHERE status = 'processing'`) in the generic plans of prepared statements.
_PROCESSING: Final = sa.literal_column("'processing'", sa.Text)


class PostgresStore:
    """Jobs in one PostgreSQL table, claimed with `FOR UPDATE SKIP LOCKED`.

    Connects lazily on first use, creating the table if needed. Every method is one
    short transaction on a pooled connection; no connection is held while a handler
    runs. `watch` holds one extra, dedicated connection for LISTEN.
    """

    def __init__(
        self,
        url: str,
        *,
        table: str | None = None,
        schema: str | None = None,
        pool_size: int | None = None,
        max_overflow: int | None = None,
    ) -> None:
        parsed = parse_url(url)
        self._url: StoreURL = parsed
        self._schema = Schema(
            check_name(table, "table") if table is not None else parsed.table,
            check_name(schema, "schema") if schema is not None else parsed.schema,
        )
        self._pool_size = parsed.pool_size if pool_size is None else pool_size
        self._max_overflow = parsed.max_overflow if max_overflow is None else max_overflow
        self._engine: AsyncEngine | None = None
        self._pool: HotPool | None = None
        self._ready = False
        self._ready_lock: asyncio.Lock | None = None
        self._sql = statements(self._schema)

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        """Build from `postgresql://user@host:port/db?table=jobs&schema=...` (entry point)."""
        return cls(url)

    def __repr__(self) -> str:
        return f"PostgresStore(<{self._url.driver}>, table={self._schema.qualified!r})"

    @property
    def table(self) -> sa.Table:
        """The SQLAlchemy `Table` of the jobs (for reports and joins in your own queries)."""
        return self._schema.jobs

    @property
    def channel(self) -> str:
        """The NOTIFY channel that announces new work on this table."""
        return self._schema.channel

    # -- connection and schema --------------------------------------------------------

    @property
    def engine(self) -> AsyncEngine:
        """The store's SQLAlchemy engine (created on first use)."""
        if self._engine is None:
            connect_args: dict[str, Any] = (
                {"timeout": 10, "server_settings": {"application_name": "jobs_postgres"}}
                if self._url.driver == "asyncpg"
                else {"connect_timeout": 10, "application_name": "jobs_postgres"}
            )
            self._engine = create_async_engine(
                self._url.sqlalchemy_url,
                pool_size=self._pool_size,
                max_overflow=self._max_overflow,
                pool_timeout=self._url.pool_timeout,
                pool_pre_ping=True,
                json_serializer=dumps,
                json_deserializer=json.loads,
                connect_args=connect_args,
            )
        return self._engine

    async def _ensure_ready(self) -> AsyncEngine:
        engine = self.engine
        if self._ready:
            return engine
        if self._ready_lock is None:
            self._ready_lock = asyncio.Lock()
        async with self._ready_lock:
            if not self._ready:
                with translated("creating the jobs table"):
                    async with engine.begin() as conn:
                        await self._schema.create(conn)
                    await self._check_clock(engine)
                self._ready = True
        return engine

    async def _hot_pool(self) -> HotPool:
        """The asyncpg pool of the hot path, created (with the table) on first use."""
        pool = self._pool
        if pool is not None and self._ready:
            return pool
        await self._ensure_ready()
        if self._pool is None:
            self._pool = HotPool(
                self._url.libpq_url, size=self._pool_size, timeout=self._url.pool_timeout
            )
        return self._pool

    async def _check_clock(self, engine: AsyncEngine) -> None:
        """Warn when the server's clock and ours differ by more than `SKEW_WARNING`.

        Leases are judged by the application's clock, so every host running workers
        must keep its clock in step (NTP); a warning here means this one may not be.
        """
        async with engine.connect() as conn:
            before = datetime.now(UTC)
            server = await conn.scalar(sa.select(sa.func.now()))
            after = datetime.now(UTC)
        if server is None:
            return
        ours = before + (after - before) / 2
        skew = server - ours
        if abs(skew) > SKEW_WARNING:
            log.warning(
                "clock skew: the PostgreSQL server's clock is %+.3fs from this host's;"
                " leases are judged by the application clock, so keep hosts in sync (NTP)",
                skew.total_seconds(),
            )

    async def close(self) -> None:
        """Close both pools."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
            self._ready = False

    # -- writes -----------------------------------------------------------------------

    async def insert(self, jobs: Sequence[Job]) -> None:
        """Insert all jobs in one transaction and NOTIFY listeners when it commits."""
        if not jobs:
            return
        pool = await self._hot_pool()
        notify = _notify_payloads({job.topic for job in jobs})
        with translated("inserting jobs"):
            async with pool.connection() as conn:
                if len(jobs) == 1:
                    await conn.execute(
                        self._sql.insert_one, *_values(jobs[0]), self._schema.channel, notify[0]
                    )
                else:
                    columns = list(zip(*map(_values, jobs), strict=True))
                    await conn.execute(self._sql.insert, *columns, self._schema.channel, notify)

    async def insert_with(self, connection: AsyncConnection, jobs: Sequence[Job]) -> None:
        """Insert jobs inside the caller's own transaction (transactional enqueue).

        The jobs (built with `Jobs.prepare`) exist if and only if the caller's
        transaction commits, and workers are notified only then. `connection` must be
        an `AsyncConnection` to the same database, inside a transaction the caller
        commits or rolls back.
        """
        if not jobs:
            return
        await self._ensure_ready()
        with translated("inserting jobs in the caller's transaction"):
            await self._insert(connection, jobs)

    async def _insert(self, conn: AsyncConnection, jobs: Sequence[Job]) -> None:
        await conn.execute(self._schema.jobs.insert(), [to_row(job) for job in jobs])
        await self._notify(conn, {job.topic for job in jobs})

    async def _notify(self, conn: AsyncConnection, topics: set[str]) -> None:
        """NOTIFY in the caller's transaction: delivered on commit, never the payload."""
        await conn.execute(
            sa.select(
                sa.func.pg_notify(self._schema.channel, sa.column("topic", sa.Text))
            ).select_from(sa.func.unnest(sa.bindparam("topics", type_=_TEXT_ARRAY)).alias("topic")),
            {"topics": _notify_payloads(topics)},
        )

    async def claim(
        self, *, topics: Collection[str], now: datetime, lease: timedelta, limit: int
    ) -> Sequence[Job]:
        """Lease up to `limit` due jobs in one statement; others' locked rows are skipped."""
        wanted = sorted(set(topics))
        if not wanted or limit <= 0:
            return []
        pool = await self._hot_pool()
        with translated("claiming jobs"):
            async with pool.connection() as conn:
                rows = await conn.fetch(self._sql.claim, now, wanted, limit, now + lease)
        jobs = [to_job(row) for row in rows]
        jobs.sort(key=lambda job: (job.run_at, job.id))
        return jobs

    async def update(self, updates: Sequence[JobUpdate]) -> Sequence[bool]:
        """Compare-and-set every update in one transaction; rows locked in id order."""
        if not updates:
            return []
        pool = await self._hot_pool()
        applied = [False] * len(updates)
        rounds = _rounds(updates)
        with translated("updating jobs"):
            async with pool.connection() as conn:
                if len(rounds) == 1:
                    rows = await conn.fetch(
                        self._sql.update, *_update_arrays(rounds[0]), self._schema.channel
                    )
                else:  # one job named twice: one statement per round, one transaction
                    rows = []
                    async with conn.transaction():
                        for indexed in rounds:
                            rows += await conn.fetch(
                                self._sql.update, *_update_arrays(indexed), self._schema.channel
                            )
        for row in rows:
            applied[row["ord"]] = True
        return applied

    async def delete(self, job_id: str, *, expected_status: JobStatus) -> bool:
        """Delete the job if it is still in `expected_status`."""
        canonical = canonical_id(job_id)
        if canonical is None:
            return False
        engine = await self._ensure_ready()
        t = self._schema.jobs
        with translated("deleting a job"):
            async with engine.begin() as conn:
                result = await conn.execute(
                    sa.delete(t)
                    .where(t.c.id == canonical, t.c.status == JobStatus(expected_status).value)
                    .returning(t.c.id)
                )
                return result.first() is not None

    # -- reads ------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        """The job with this id, or `JobNotFound` (also for ids that are not UUIDs)."""
        canonical = canonical_id(job_id)
        if canonical is None:
            raise JobNotFound(str(job_id))
        engine = await self._ensure_ready()
        t = self._schema.jobs
        with translated("reading a job"):
            async with engine.connect() as conn:
                row = (await conn.execute(sa.select(t).where(t.c.id == canonical))).mappings()
                found = row.first()
        if found is None:
            raise JobNotFound(job_id)
        return to_job(found)

    async def list(self, query: JobQuery) -> JobPage:
        """A page newest first (`created`, `id` descending) and the total of matches."""
        engine = await self._ensure_ready()
        t = self._schema.jobs
        where: list[sa.ColumnElement[bool]] = []
        if query.topic is not None:
            where.append(t.c.topic == query.topic)
        if query.status is not None:
            where.append(t.c.status == JobStatus(query.status).value)
        page = (
            sa.select(t)
            .where(*where)
            .order_by(t.c.created.desc(), t.c.id.desc())
            .limit(query.limit)
            .offset(query.offset)
        )
        with translated("listing jobs"):
            async with engine.connect() as conn:
                rows = (await conn.execute(page)).mappings().all()
                total = await conn.scalar(sa.select(sa.func.count()).select_from(t).where(*where))
        return JobPage(
            items=[to_job(row) for row in rows],
            total=int(total or 0),
            limit=query.limit,
            offset=query.offset,
        )

    async def count_by_status(self) -> Mapping[JobStatus, int]:
        """How many jobs are in each status."""
        engine = await self._ensure_ready()
        t = self._schema.jobs
        counts = dict.fromkeys(JobStatus, 0)
        with translated("counting jobs"):
            async with engine.connect() as conn:
                result = await conn.execute(
                    sa.select(t.c.status, sa.func.count()).group_by(t.c.status)
                )
                for status, count in result.all():
                    counts[JobStatus(status)] = int(count)
        return counts

    async def expired(self, *, now: datetime, limit: int) -> Sequence[Job]:
        """Processing jobs whose lease ran out, by (`locked_until`, `id`); no locks taken."""
        if limit <= 0:
            return []
        engine = await self._ensure_ready()
        stmt = self._expired_query(now, limit)
        with translated("finding expired leases"):
            async with engine.connect() as conn:
                rows = (await conn.execute(stmt)).mappings().all()
        return [to_job(row) for row in rows]

    def _expired_query(self, now: datetime, limit: int) -> sa.Select[Any]:
        t = self._schema.jobs
        return (
            sa.select(t)
            .where(t.c.status == _PROCESSING, t.c.locked_until < now)
            .order_by(t.c.locked_until, t.c.id)
            # A LIMIT the planner cannot read: it then plans for a tenth of the
            # matches and walks the processing index in order, rather than sorting
            # every expired lease when the table's statistics are missing or stale.
            .limit(sa.select(sa.literal(limit, sa.BigInteger)).scalar_subquery())
        )

    # -- wake-up ----------------------------------------------------------------------

    async def watch(self, on_new_work: Callable[[], None]) -> None:
        """LISTEN for new work from any process until cancelled, reconnecting as needed."""
        await listen_forever(self._url.libpq_url, self._schema.channel, on_new_work)


def _rounds(updates: Sequence[JobUpdate]) -> list[list[tuple[int, JobUpdate]]]:
    """Split updates into rounds with each job at most once, keeping per-job order.

    A batch rarely names a job twice, but when it does the second write must see the
    first, as if applied one after the other; one statement per round gives that.
    """
    rounds: list[list[tuple[int, JobUpdate]]] = []
    seen: list[set[str]] = []
    for position, change in enumerate(updates):
        job_id = change.job.id
        depth = next((i for i in range(len(rounds) - 1, -1, -1) if job_id in seen[i]), -1) + 1
        if depth == len(rounds):
            rounds.append([])
            seen.append(set())
        rounds[depth].append((position, change))
        seen[depth].add(job_id)
    return rounds


def _values(job: Job) -> tuple[Any, ...]:
    """A new job's column values, in `COLUMNS` order (payload as JSON text)."""
    return (
        job.id,
        job.topic,
        dumps(job.payload),
        job.status.value,
        job.run_at,
        job.locked_until,
        job.lock_token,
        job.retries,
        job.max_retries,
        job.last_error,
        job.created,
        job.updated,
    )


def _notify_payloads(topics: set[str]) -> list[str]:
    """What to NOTIFY for new work on `topics`: each short topic, or one empty payload.

    A topic is at most 255 characters; NOTIFY carries only short ones, and a batch of
    many topics sends one topic-less notification instead of one each.
    """
    if len(topics) > _MAX_TOPIC_NOTIFIES:
        return [""]
    return sorted({t if len(t.encode()) <= NOTIFY_TOPIC_BYTES else "" for t in topics})


def _update_arrays(indexed: Sequence[tuple[int, JobUpdate]]) -> list[list[Any]]:
    """The parallel arrays of `UPDATE_ARRAYS` for one round, in id order."""
    ordered = sorted(indexed, key=lambda item: item[1].job.id)
    arrays: list[list[Any]] = [[] for _ in UPDATE_ARRAYS]
    ords, ids, expected_statuses, expected_tokens, *fields = arrays
    for position, change in ordered:
        job = change.job
        ords.append(position)
        ids.append(canonical_id(job.id) or "00000000-0000-0000-0000-000000000000")
        expected_statuses.append(JobStatus(change.expected_status).value)
        expected_tokens.append(change.expected_lock_token)
        for name, values in zip(MUTABLE_FIELDS, fields, strict=True):
            value = getattr(job, name)
            values.append(value.value if name == "status" else value)
    return arrays
