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
from jobs_postgres._rows import canonical_id, dumps, to_job, to_row
from jobs_postgres._schema import Schema
from jobs_postgres._url import StoreURL, check_name, parse_url

log = logging.getLogger("jobs_postgres")

#: Largest clock difference between this host and the server before we warn.
SKEW_WARNING: Final = timedelta(seconds=1)
#: Beyond this many distinct topics one transaction sends a single topic-less NOTIFY.
_MAX_TOPIC_NOTIFIES: Final = 8
_TEXT_ARRAY: Final = pg.ARRAY(sa.Text)
# Status constants are inlined as literals, not bound: only then can the planner match the
# partial indexes (`WHERE status = 'pending'`) in the generic plans of prepared statements.
_PENDING: Final = sa.literal_column("'pending'", sa.Text)
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
        self._ready = False
        self._ready_lock: asyncio.Lock | None = None
        t = self._schema.jobs
        self._claim_sql = _claim_statement(t)
        self._update_sql = _update_statement(t)

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
        """Dispose of the pool."""
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
            self._ready = False

    # -- writes -----------------------------------------------------------------------

    async def insert(self, jobs: Sequence[Job]) -> None:
        """Insert all jobs in one transaction and NOTIFY listeners when it commits."""
        if not jobs:
            return
        engine = await self._ensure_ready()
        with translated("inserting jobs"):
            async with engine.begin() as conn:
                await self._insert(conn, jobs)

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
        payloads = sorted(topics) if len(topics) <= _MAX_TOPIC_NOTIFIES else [""]
        # A topic is at most 255 characters; NOTIFY carries only short ones.
        payloads = [p if len(p.encode()) <= 64 else "" for p in payloads]
        await conn.execute(
            sa.select(
                sa.func.pg_notify(self._schema.channel, sa.column("topic", sa.Text))
            ).select_from(sa.func.unnest(sa.bindparam("topics", type_=_TEXT_ARRAY)).alias("topic")),
            {"topics": sorted(set(payloads))},
        )

    async def claim(
        self, *, topics: Collection[str], now: datetime, lease: timedelta, limit: int
    ) -> Sequence[Job]:
        """Lease up to `limit` due jobs in one statement; others' locked rows are skipped."""
        wanted = sorted(set(topics))
        if not wanted or limit <= 0:
            return []
        engine = await self._ensure_ready()
        with translated("claiming jobs"):
            async with engine.begin() as conn:
                result = await conn.execute(
                    self._claim_sql,
                    {"topics": wanted, "now": now, "until": now + lease, "limit": limit},
                )
                rows = result.mappings().all()
        jobs = [to_job(row) for row in rows]
        jobs.sort(key=lambda job: (job.run_at, job.id))
        return jobs

    async def update(self, updates: Sequence[JobUpdate]) -> Sequence[bool]:
        """Compare-and-set every update in one transaction; rows locked in id order."""
        if not updates:
            return []
        engine = await self._ensure_ready()
        applied = [False] * len(updates)
        woken: set[str] = set()
        with translated("updating jobs"):
            async with engine.begin() as conn:
                for indexed in _rounds(updates):
                    if len(indexed) > 1:
                        await self._lock_in_order(conn, [u.job.id for _, u in indexed])
                    result = await conn.execute(self._update_sql, _update_params(indexed))
                    for position, topic, status in result.all():
                        applied[position] = True
                        if status == JobStatus.PENDING.value:
                            woken.add(topic)
                if woken:
                    await self._notify(conn, woken)
        return applied

    async def _lock_in_order(self, conn: AsyncConnection, ids: list[str]) -> None:
        """Lock the rows an update touches by ascending id, so writers never deadlock."""
        t = self._schema.jobs
        await conn.execute(
            sa.select(t.c.id)
            .where(t.c.id == sa.any_(sa.bindparam("ids", type_=pg.ARRAY(pg.UUID(as_uuid=False)))))
            .order_by(t.c.id)
            .with_for_update(),
            {"ids": sorted(set(ids))},
        )

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
        t = self._schema.jobs
        stmt = (
            sa.select(t)
            .where(t.c.status == _PROCESSING, t.c.locked_until < now)
            .order_by(t.c.locked_until, t.c.id)
            .limit(limit)
        )
        with translated("finding expired leases"):
            async with engine.connect() as conn:
                rows = (await conn.execute(stmt)).mappings().all()
        return [to_job(row) for row in rows]

    # -- wake-up ----------------------------------------------------------------------

    async def watch(self, on_new_work: Callable[[], None]) -> None:
        """LISTEN for new work from any process until cancelled, reconnecting as needed."""
        await listen_forever(self._url.libpq_url, self._schema.channel, on_new_work)


def _claim_statement(t: sa.Table) -> sa.Update:
    """`UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED)`: pick and lease in one step."""
    picked = (
        sa.select(t.c.id)
        .where(
            t.c.status == _PENDING,
            t.c.run_at <= sa.bindparam("now", type_=sa.DateTime(timezone=True)),
            t.c.topic == sa.any_(sa.bindparam("topics", type_=_TEXT_ARRAY)),
        )
        .order_by(t.c.run_at, t.c.id)
        .limit(sa.bindparam("limit", type_=sa.Integer))
        .with_for_update(skip_locked=True)
        .cte("picked")
    )
    fresh_token = sa.func.replace(
        sa.cast(sa.func.gen_random_uuid(), sa.Text),
        sa.literal_column("'-'"),
        sa.literal_column("''"),
    )
    return (
        sa.update(t)
        .where(t.c.id == picked.c.id)
        .values(
            status=_PROCESSING,
            locked_until=sa.bindparam("until", type_=sa.DateTime(timezone=True)),
            lock_token=fresh_token,
            updated=sa.bindparam("now", type_=sa.DateTime(timezone=True)),
        )
        .returning(*t.c)
    )


_UPDATE_COLUMNS: Final = (
    ("ord", "integer"),
    ("id", "uuid"),
    ("expected_status", "text"),
    ("expected_token", "text"),
    ("status", "text"),
    ("run_at", "timestamptz"),
    ("locked_until", "timestamptz"),
    ("lock_token", "text"),
    ("retries", "integer"),
    ("last_error", "text"),
    ("updated", "timestamptz"),
)


def _update_statement(t: sa.Table) -> sa.TextClause:
    """One guarded UPDATE for a whole batch, fed by parallel arrays (one prepared plan).

    Returns the input position of every row it changed; absent positions lost their
    compare-and-set.
    """
    arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in _UPDATE_COLUMNS)
    names = ", ".join(name for name, _ in _UPDATE_COLUMNS)
    # Names were checked to be plain lower-case identifiers, so quoting them is exact.
    target = f'"{t.schema}"."{t.name}"' if t.schema else f'"{t.name}"'
    sets = ", ".join(f"{col} = v.{col}" for col in MUTABLE_FIELDS)
    sql = (
        f"UPDATE {target} AS t SET {sets}"  # noqa: S608 - identifiers checked, values bound
        f" FROM unnest({arrays}) AS v({names})"
        " WHERE t.id = v.id AND t.status = v.expected_status"
        " AND t.lock_token IS NOT DISTINCT FROM v.expected_token"
        " RETURNING v.ord, t.topic, t.status"
    )
    return sa.text(sql)


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


def _update_params(indexed: Sequence[tuple[int, JobUpdate]]) -> dict[str, list[Any]]:
    ordered = sorted(indexed, key=lambda item: item[1].job.id)
    params: dict[str, list[Any]] = {name: [] for name, _ in _UPDATE_COLUMNS}
    for position, change in ordered:
        job = change.job
        params["ord"].append(position)
        params["id"].append(canonical_id(job.id) or "00000000-0000-0000-0000-000000000000")
        params["expected_status"].append(JobStatus(change.expected_status).value)
        params["expected_token"].append(change.expected_lock_token)
        params["status"].append(job.status.value)
        params["run_at"].append(job.run_at)
        params["locked_until"].append(job.locked_until)
        params["lock_token"].append(job.lock_token)
        params["retries"].append(job.retries)
        params["last_error"].append(job.last_error)
        params["updated"].append(job.updated)
    return params
