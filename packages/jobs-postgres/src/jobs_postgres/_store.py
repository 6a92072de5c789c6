"""`PostgresStore`: the `JobStore` port on PostgreSQL, for many workers on many hosts."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from jobs_core import (
    ACTIVE_STATUSES,
    BULKY_FIELDS,
    EXPIRED_ORDER,
    GIVEN_UP_STATUS,
    JOB_FIELDS,
    MUTABLE_FIELDS,
    Job,
    JobNotFound,
    JobPage,
    JobQuery,
    JobStatus,
    JobUpdate,
    Schedule,
    ScheduleNotFound,
    SchemaBehind,
    SchemaMissing,
    SchemaTooNew,
    SchemaVersion,
    StoreError,
    StoreUnavailable,
    TopicInfo,
    TopicPolicy,
    UniqueKeyTaken,
    UnreadableJob,
    check_delete_finished,
    check_max_running,
    claim_allowances,
    claim_order_key,
    rows_within_budget,
    topic_infos,
)
from jobs_postgres import _schedules as schedules
from jobs_postgres._errors import translated
from jobs_postgres._listen import listen_forever
from jobs_postgres._migrations import installed_version, latest_version, migrate
from jobs_postgres._pool import HotPool, Retry
from jobs_postgres._rows import (
    Unreadable,
    canonical_id,
    decode_each,
    dumps,
    insert_values,
    renew_arrays,
    to_job,
    to_row,
    unread_column,
    update_arrays,
)
from jobs_postgres._schema import HELD_KEY, LEASED, Schema
from jobs_postgres._statements import NOTIFY_TOPIC_BYTES, statements
from jobs_postgres._statements import delete_finished as delete_finished_sql
from jobs_postgres._url import StoreURL, check_name, parse_url

log = logging.getLogger("jobs_postgres")
T = TypeVar("T")

#: Largest clock difference between this host and the server before we warn.
SKEW_WARNING: Final = timedelta(seconds=1)
#: Beyond this many distinct topics one transaction sends a single topic-less NOTIFY.
_MAX_TOPIC_NOTIFIES: Final = 8
#: How often a unique insert re-inserts jobs whose holder ended between its statements.
_HOLDER_ROUNDS: Final = 5
_TEXT_ARRAY: Final = pg.ARRAY(sa.Text)
# Status constants are inlined as literals, not bound: only then can the planner match the
# partial indexes (`WHERE status = 'processing'`) in the generic plans of prepared statements.
_LEASED: Final = sa.literal_column(f"'{LEASED}'", sa.Text)
#: The fields a job keeps from its insert on (a repeated insert is checked against them).
_FIXED_FIELDS: Final = tuple(name for name in JOB_FIELDS if name not in MUTABLE_FIELDS)

#: Which hot statements run a second time, on a fresh connection, when their pooled
#: connection turns out to be dead (see `Retry`; README "Dropped connections").
RETRY_POLICY: Final[Mapping[str, Retry]] = MappingProxyType(
    {
        # Ids are the client's: a repeat either inserts the jobs or hits the primary key
        # because the first attempt committed; then the rows must be these very jobs
        # (`_check_inserted`), or the insert fails.
        "insert": Retry(unsent=True, unknown=True),
        # A batch with unique keys is a transaction of several statements whose answer
        # (which jobs were new) a repeat after an unknown outcome could not tell.
        "insert_unique": Retry(unsent=True, unknown=False),
        # Compare-and-set on status + lock token: a repeat never applies a change twice.
        # A change the repeat finds already made is reported applied only if the row
        # holds every value it writes (`_check_updated`).
        "update": Retry(unsent=True, unknown=True),
        # A batch naming one job twice runs rounds that build on each other; a repeat
        # after an unknown outcome could not tell which rounds the first one applied.
        "update_rounds": Retry(unsent=True, unknown=False),
        # A renewal's guard accepts its own new token, so a repeat after its first attempt
        # committed rewrites the same lease and returns the row as stored: the same
        # answer, with no check afterwards.
        "renew": Retry(unsent=True, unknown=True),
        # A batch renewing one job twice runs rounds; after an unknown outcome the repeat
        # of an earlier round finds the later round's token and would report a lease
        # that was renewed as lost.
        "renew_rounds": Retry(unsent=True, unknown=False),
        # A claim that committed but whose answer was lost leaves its jobs leased to
        # nobody until the lease runs out (then they are rescued and rerun); a repeat
        # would lease more jobs without freeing those. Only a claim that never left runs
        # again.
        "claim": Retry(unsent=True, unknown=False),
        # Deleting finished jobs is safe to repeat: the repeat deletes only rows that still
        # match. After an unknown outcome its count misses what the first attempt deleted
        # (up to `limit` more rows may have gone in this call), so a retention loop at
        # worst stops a round early and carries on at its next run.
        "delete_finished": Retry(unsent=True, unknown=True),
    }
)


class PostgresStore:
    """Jobs in one PostgreSQL table, claimed with `FOR UPDATE SKIP LOCKED`.

    Connects lazily on first use, creating the table or migrating it to this release's
    layout if needed (with `create_schema=False` nothing is written: a missing table
    raises `SchemaMissing`, an older one `SchemaBehind`; a newer one always raises
    `SchemaTooNew`). `migrate()` and `schema_version()` do or check that up front.
    Every method is one short transaction on a pooled connection; no connection is held
    while a handler runs. `watch` holds one extra, dedicated connection for LISTEN.
    """

    def __init__(
        self,
        url: str,
        *,
        table: str | None = None,
        schema: str | None = None,
        pool_size: int | None = None,
        max_overflow: int | None = None,
        create_schema: bool = True,
    ) -> None:
        parsed = parse_url(url)
        self._url: StoreURL = parsed
        self._shown_url = _without_password(url)
        self._create_schema = create_schema
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
        self._delete_finished_sql: dict[tuple[JobStatus, ...], str] = {}

    @classmethod
    def from_url(cls, url: str, *, create_schema: bool = True) -> PostgresStore:
        """Build from `postgresql://user@host:port/db?table=jobs&schema=...` (entry point)."""
        return cls(url, create_schema=create_schema)

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
                await self._open_schema()
                with translated("checking the server clock"):
                    await self._check_clock(engine)
                self._ready = True
        return engine

    @property
    def _where(self) -> str:
        """The table, as schema errors name it."""
        return f"table {self._schema.qualified} of {self._shown_url}"

    async def _open_schema(self) -> SchemaVersion:
        """Migrate the table (`create_schema`), or check that it is at the latest step."""
        if self._create_schema:
            return await self.migrate()
        version = await self.schema_version()
        if version.current is None:
            raise SchemaMissing(self._shown_url)
        if version.ahead:
            raise SchemaTooNew(self._where, version.current, version.latest)
        if version.behind:
            raise SchemaBehind(self._where, version.current, version.latest)
        return version

    async def schema_version(self) -> SchemaVersion:
        """Where the table's schema stands (`current=None`: no table); writes nothing."""
        # The inner block names schema failures; the outer one, the connection's.
        with translated("connecting to the database"):
            async with self.engine.connect() as conn:
                with translated("looking for the jobs table"):
                    current = await installed_version(conn, self._schema)
        return SchemaVersion(current=current, latest=latest_version())

    async def migrate(self) -> SchemaVersion:
        """Create the table or apply the steps it lacks (also with `create_schema=False`);
        idempotent. Raises `SchemaTooNew`, writing nothing, if the table is newer."""
        with translated("connecting to the database"):
            async with self.engine.connect() as conn:
                with translated("migrating the jobs table"):
                    return await migrate(conn, self._schema, self._where)

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

    async def insert(self, jobs: Sequence[Job]) -> Sequence[Job]:
        """Insert all jobs in one transaction and NOTIFY listeners when it commits; per
        job, the job holding its place (itself, or the active job holding its key)."""
        if not jobs:
            return []
        pool = await self._hot_pool()
        if any(job.unique_key is not None for job in jobs):
            return await self._insert_unique(pool, jobs)
        notify = _notify_payloads({job.topic for job in jobs})

        async def insert(conn: asyncpg.Connection, repeat: bool) -> bool:
            """True once stored; False when a repeat found the ids taken."""
            try:
                if len(jobs) == 1:
                    await conn.execute(
                        self._sql.insert_one,
                        *insert_values(jobs[0]),
                        self._schema.channel,
                        notify[0],
                    )
                else:
                    columns = list(zip(*map(insert_values, jobs), strict=True))
                    await conn.execute(self._sql.insert, *columns, self._schema.channel, notify)
            except asyncpg.UniqueViolationError:
                if not repeat:
                    raise
                return False
            return True

        with translated("inserting jobs"):
            stored = await pool.run(insert, RETRY_POLICY["insert"])
        if not stored:
            await self._check_inserted(jobs)
        return jobs

    async def _insert_unique(self, pool: HotPool, jobs: Sequence[Job]) -> list[Job]:
        """A batch with unique keys, in one transaction: `INSERT ... ON CONFLICT DO
        NOTHING RETURNING id` on the partial unique index, then the holders of the keys
        that conflicted read in the same transaction. A holder may turn final between
        the two statements (READ COMMITTED: each sees the latest commits); those jobs
        are inserted again, until every job is stored or has a holder."""
        sql = self._sql

        async def insert(conn: asyncpg.Connection, repeat: bool) -> list[Job]:
            answer: list[Job | None] = [None] * len(jobs)
            todo = list(range(len(jobs)))
            async with conn.transaction():
                for _ in range(_HOLDER_ROUNDS):
                    columns = list(zip(*(insert_values(jobs[i]) for i in todo), strict=True))
                    stored = {r[0] for r in await conn.fetch(sql.insert_unique, *columns)}
                    missing = []
                    for i in todo:
                        if jobs[i].id in stored:
                            answer[i] = jobs[i]
                        else:
                            missing.append(i)
                    if not missing:
                        break
                    keys = sorted({(jobs[i].topic, str(jobs[i].unique_key)) for i in missing})
                    rows = await conn.fetch(
                        sql.holders, [topic for topic, _ in keys], [key for _, key in keys]
                    )
                    held = {(row["topic"], row["unique_key"]): to_job(row) for row in rows}
                    todo = []
                    for i in missing:
                        holder = held.get((jobs[i].topic, jobs[i].unique_key))
                        if holder is None:
                            todo.append(i)  # its holder ended meanwhile: try again
                        else:
                            answer[i] = holder
                    if not todo:
                        break
                else:
                    raise StoreUnavailable(
                        f"PostgreSQL table {self._schema.qualified}: the holders of unique"
                        f" keys kept changing over {_HOLDER_ROUNDS} rounds; retry later"
                    )
                new = {job.topic for job, got in zip(jobs, answer, strict=True) if got is job}
                if new:
                    await conn.execute(sql.notify, self._schema.channel, _notify_payloads(new))
            return [job for job in answer if job is not None]

        with translated("inserting jobs"):
            return await pool.run(insert, RETRY_POLICY["insert_unique"])

    async def _check_inserted(self, jobs: Sequence[Job]) -> None:
        """After a repeated insert hit the primary key: succeed if the first attempt stored
        these jobs (every field fixed at insert matches), fail otherwise.

        The statement is atomic, so the first attempt stored all of them or none; ids are
        UUIDs the client made for these jobs, so rows with these ids and these topics,
        payloads and creation times are the jobs themselves.
        """
        found = {job.id: job for job in await self._read_many([job.id for job in jobs])}
        for job in jobs:
            stored = found.get(job.id)
            if stored is None or any(
                getattr(stored, name) != getattr(job, name) for name in _FIXED_FIELDS
            ):
                raise StoreError(
                    f"PostgreSQL failed while inserting jobs: job {job.id} already exists"
                )

    async def _read_many(self, job_ids: Sequence[str]) -> list[Job]:
        t = self._schema.jobs
        ids = [canonical for job_id in job_ids if (canonical := canonical_id(job_id))]

        async def read(conn: AsyncConnection) -> Sequence[Any]:
            return (await conn.execute(sa.select(t).where(t.c.id.in_(ids)))).mappings().all()

        return [to_job(row) for row in await self._read("reading jobs back", read)]

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

    async def _insert(
        self, conn: AsyncConnection, jobs: Sequence[Job], *, skip_held_keys: bool = False
    ) -> None:
        """INSERT in the caller's transaction; `skip_held_keys` stores nothing for a job
        whose unique key an active job holds (a schedule's slot fired twice)."""
        statement = pg.insert(self._schema.jobs)
        if skip_held_keys:
            statement = statement.on_conflict_do_nothing(
                index_elements=["topic", "unique_key"], index_where=sa.text(HELD_KEY)
            )
        await conn.execute(statement, [to_row(job) for job in jobs])
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
        self,
        *,
        topics: Collection[str],
        now: datetime,
        lease: timedelta,
        limit: int,
        caps: Mapping[str, int] | None = None,
    ) -> Sequence[Job]:
        """Lease up to `limit` due jobs; others' locked rows are skipped.

        Without policy rows for the topics and without `caps`, one statement (which also
        reads the topics table). Otherwise one transaction: lock the topics' policy rows
        `FOR UPDATE` in topic order (claims of a limited topic queue here, in every
        process), count the limited topics' `processing` rows in a fresh snapshot, and
        claim within each topic's allowance (`claim_allowances`).
        """
        wanted = sorted(set(topics))
        if not wanted or limit <= 0:
            return []
        pool = await self._hot_pool()
        sql = self._sql

        async def within(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            async with conn.transaction():
                held = await conn.fetch(sql.lock_topics, wanted)
                rules = {
                    r["topic"]: TopicPolicy(
                        topic=r["topic"], paused=r["paused"], max_running=r["max_running"]
                    )
                    for r in held
                }
                limited = [
                    t for t, p in rules.items() if p.max_running is not None and not p.paused
                ]
                running = (
                    {r["topic"]: int(r["n"]) for r in await conn.fetch(sql.running, limited)}
                    if limited
                    else {}
                )
                allowed = claim_allowances(
                    wanted, limit=limit, policies=rules, running=running, caps=caps
                )
                if not allowed:
                    return []
                leased: list[asyncpg.Record] = await conn.fetch(
                    sql.claim_within, now, list(allowed), limit, now + lease, list(allowed.values())
                )
                return leased

        async def claim(conn: asyncpg.Connection, repeat: bool) -> list[asyncpg.Record]:
            if caps:
                return await within(conn)
            leased: list[asyncpg.Record] = await conn.fetch(
                sql.claim, now, wanted, limit, now + lease
            )
            if leased and leased[0]["held_topics"] is not None:
                return await within(conn)
            return [row for row in leased if row["id"] is not None]

        with translated("claiming jobs"):
            rows = await pool.run(claim, RETRY_POLICY["claim"])
        jobs, bad = decode_each(rows)
        if bad:
            await self._quarantine(bad, now)
        jobs.sort(key=claim_order_key)
        return jobs

    async def set_paused(self, topic: str, paused: bool) -> None:
        """Pause or resume `topic` for every process on the table (one upsert)."""
        await self._set_policy(topic, "paused", bool(paused))

    async def set_max_running(self, topic: str, max_running: int | None) -> None:
        """Set or lift `topic`'s global limit (one upsert)."""
        await self._set_policy(topic, "max_running", check_max_running(max_running))

    async def _set_policy(self, topic: str, column: str, value: object) -> None:
        """Upsert one setting, then drop the row if it is back at the defaults; one
        transaction. A resumed or raised topic wakes listeners."""
        engine = await self._ensure_ready()
        topics = self._schema.topics
        upsert = pg.insert(topics).values({"topic": topic, column: value})
        upsert = upsert.on_conflict_do_update(
            index_elements=[topics.c.topic], set_={column: upsert.excluded[column]}
        )
        drop = sa.delete(topics).where(
            topics.c.topic == topic, topics.c.paused.is_(False), topics.c.max_running.is_(None)
        )
        with translated("setting a topic's policy"):
            async with engine.begin() as conn:
                await conn.execute(upsert)
                await conn.execute(drop)
                await self._notify(conn, {topic})

    async def topics(self) -> Sequence[TopicInfo]:
        """Counts per topic and status, and each topic's policy, from one snapshot."""
        t, p = self._schema.jobs, self._schema.topics

        async def read(conn: AsyncConnection) -> tuple[Sequence[Any], Sequence[Any]]:
            async with conn.begin():
                await conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
                counted = await conn.execute(
                    sa.select(
                        t.c.topic, t.c.status, sa.func.count(), sa.func.min(t.c.run_at)
                    ).group_by(t.c.topic, t.c.status)
                )
                rows = counted.all()
                held = (await conn.execute(sa.select(p.c.topic, p.c.paused, p.c.max_running))).all()
            return rows, held

        rows, held = await self._read("listing topics", read)
        return topic_infos(
            [tuple(row) for row in rows],
            (TopicPolicy(topic=t, paused=bool(p), max_running=m) for t, p, m in held),
        )

    async def update(self, updates: Sequence[JobUpdate]) -> Sequence[bool]:
        """Compare-and-set every update in one transaction; rows locked in id order."""
        if not updates:
            return []
        pool = await self._hot_pool()
        applied = [False] * len(updates)
        rounds = _rounds(updates)

        async def update(
            conn: asyncpg.Connection, repeat: bool
        ) -> tuple[list[asyncpg.Record], bool] | None:
            try:
                if len(rounds) == 1:
                    rows = await conn.fetch(
                        self._sql.update, *update_arrays(rounds[0]), self._schema.channel
                    )
                    return rows, repeat
                rows = []  # one job named twice: one statement per round, one transaction
                async with conn.transaction():
                    for indexed in rounds:
                        rows += await conn.fetch(
                            self._sql.update, *update_arrays(indexed), self._schema.channel
                        )
                return rows, repeat
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != self._schema.unique_key_index:
                    raise
                return None  # a requeue over a held unique key: nothing was written

        policy = RETRY_POLICY["update" if len(rounds) == 1 else "update_rounds"]
        with translated("updating jobs"):
            done = await pool.run(update, policy)
        if done is None:
            raise await self._key_taken(updates)
        rows, repeated = done
        for row in rows:
            applied[row["ord"]] = True
        if repeated and not all(applied):
            await self._check_updated(updates, applied)
        return applied

    async def _key_taken(self, updates: Sequence[JobUpdate]) -> UniqueKeyTaken:
        """The `UniqueKeyTaken` of a batch the partial unique index refused: the first
        write making a keyed job active whose key another active job holds now."""
        keyed = [
            u.job
            for u in updates
            if u.job.unique_key is not None
            and u.job.status in ACTIVE_STATUSES
            and u.expected_status not in ACTIVE_STATUSES
        ]
        t = self._schema.jobs
        for job in keyed:

            async def read(conn: AsyncConnection, job: Job = job) -> Any:
                return await conn.scalar(
                    sa.select(sa.cast(t.c.id, sa.Text)).where(
                        t.c.topic == job.topic,
                        t.c.unique_key == job.unique_key,
                        t.c.status.in_([s.value for s in ACTIVE_STATUSES]),
                        t.c.id != job.id,
                    )
                )

            holder = await self._read("reading the holder of a unique key", read)
            if holder is not None:
                return UniqueKeyTaken(job.id, job.topic, str(job.unique_key), str(holder))
        job = keyed[0]  # the holder ended meanwhile; the write was refused all the same
        return UniqueKeyTaken(job.id, job.topic, str(job.unique_key))

    async def renew(self, renewals: Sequence[JobUpdate]) -> Sequence[Job | None]:
        """Renew leases in one statement (rows locked in id order); per renewal, in order,
        the job as stored after it, or None when its guard failed.

        A batch naming a job twice runs one statement per round (as `update` does), in
        one transaction, so the later renewal sees the earlier one.
        """
        if not renewals:
            return []
        pool = await self._hot_pool()
        rounds = _rounds(renewals)

        async def renew(conn: asyncpg.Connection, repeat: bool) -> list[asyncpg.Record]:
            if len(rounds) == 1:
                rows: list[asyncpg.Record] = await conn.fetch(
                    self._sql.renew, *renew_arrays(rounds[0])
                )
                return rows
            rows = []
            async with conn.transaction():
                for indexed in rounds:
                    rows += await conn.fetch(self._sql.renew, *renew_arrays(indexed))
            return rows

        policy = RETRY_POLICY["renew" if len(rounds) == 1 else "renew_rounds"]
        with translated("renewing leases"):
            rows = await pool.run(renew, policy)
        renewed: list[Job | None] = [None] * len(renewals)
        for row in rows:
            position = row["ord"]
            try:
                renewed[position] = to_job(row)
            except UnreadableJob as error:
                # As a claim does: fail the job (guarded by the new token) and report
                # the lease lost, so no worker holds a job nobody can read.
                await self._quarantine([(row, error)], renewals[position].job.updated)
        return renewed

    async def _check_updated(self, updates: Sequence[JobUpdate], applied: list[bool]) -> None:
        """After a repeated update: mark applied the changes the first attempt made.

        A change the repeat's compare-and-set refused may have been made by the first
        attempt (its commit reached the server, its answer did not). It was if the row
        holds every value the change writes, `updated` (this process's timestamp) and
        the lock token included. A row someone changed again in between reads as not
        applied, as a lost race would.
        """
        missing = [i for i, done in enumerate(applied) if not done]
        found = {job.id: job for job in await self._read_many([updates[i].job.id for i in missing])}
        for i in missing:
            wanted = updates[i].job
            row = found.get(wanted.id)
            if row is not None and all(
                getattr(row, name) == getattr(wanted, name) for name in MUTABLE_FIELDS
            ):
                applied[i] = True

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

    async def delete_finished(
        self, *, statuses: Collection[JobStatus], before: datetime, limit: int
    ) -> int:
        """Delete up to `limit` of the oldest final jobs updated before `before`, in one
        autocommitted statement that skips rows other transactions hold."""
        wanted, before, limit = check_delete_finished(statuses, before, limit)
        text = self._delete_finished_sql.get(wanted)
        if text is None:
            text = self._delete_finished_sql[wanted] = delete_finished_sql(self._schema, wanted)
        pool = await self._hot_pool()

        async def delete(conn: asyncpg.Connection, repeat: bool) -> str:
            tag: str = await conn.execute(text, before, limit)
            return tag

        with translated("deleting finished jobs"):
            tag = await pool.run(delete, RETRY_POLICY["delete_finished"])
        return int(tag.rsplit(" ", 1)[-1])  # "DELETE <count>"

    # -- schedules (`jobs_core.ScheduleStore`) ------------------------------------------

    async def save_schedule(self, schedule: Schedule) -> Schedule:
        """Create or update the schedule (one upsert); the row as stored."""
        engine = await self._ensure_ready()
        statement = schedules.upsert(self._schema.schedules, schedule)
        with translated("saving a schedule"):
            async with engine.begin() as conn:
                row = (await conn.execute(statement)).mappings().one()
        return schedules.from_row(row)

    async def get_schedule(self, name: str) -> Schedule:
        """The schedule, or `ScheduleNotFound`."""
        s = self._schema.schedules

        async def read(conn: AsyncConnection) -> Any:
            return (await conn.execute(sa.select(s).where(s.c.name == name))).mappings().first()

        found = await self._read("reading a schedule", read)
        if found is None:
            raise ScheduleNotFound(name)
        return schedules.from_row(found)

    async def list_schedules(self) -> Sequence[Schedule]:
        """Every schedule, by name."""
        s = self._schema.schedules

        async def read(conn: AsyncConnection) -> Sequence[Any]:
            return (await conn.execute(sa.select(s).order_by(s.c.name))).mappings().all()

        return [schedules.from_row(row) for row in await self._read("listing schedules", read)]

    async def delete_schedule(self, name: str) -> bool:
        """Delete the schedule; whether there was one."""
        engine = await self._ensure_ready()
        s = self._schema.schedules
        with translated("deleting a schedule"):
            async with engine.begin() as conn:
                result = await conn.execute(
                    sa.delete(s).where(s.c.name == name).returning(s.c.name)
                )
                return result.first() is not None

    async def set_schedule_paused(
        self, name: str, paused: bool, *, now: datetime, next_fire_at: datetime | None = None
    ) -> Schedule:
        """Store the pause flag (and the next slot, when given)."""
        engine = await self._ensure_ready()
        s = self._schema.schedules
        changes: dict[str, Any] = {"paused": bool(paused), "updated": now}
        if next_fire_at is not None:
            changes["next_fire_at"] = next_fire_at
        statement = sa.update(s).where(s.c.name == name).values(changes).returning(*s.c)
        with translated("pausing a schedule"):
            async with engine.begin() as conn:
                row = (await conn.execute(statement)).mappings().first()
        if row is None:
            raise ScheduleNotFound(name)
        return schedules.from_row(row)

    async def due_schedules(self, *, now: datetime, limit: int) -> Sequence[Schedule]:
        """Unpaused schedules whose next slot came (one query on the partial index)."""
        s = self._schema.schedules
        query = (
            sa.select(s)
            .where(sa.not_(s.c.paused), s.c.next_fire_at <= now)
            .order_by(s.c.next_fire_at, s.c.name)
            .limit(max(limit, 0))
        )

        async def read(conn: AsyncConnection) -> Sequence[Any]:
            return (await conn.execute(query)).mappings().all()

        return [schedules.from_row(row) for row in await self._read("finding due schedules", read)]

    async def fire_schedule(
        self,
        name: str,
        *,
        expected_next_fire_at: datetime,
        next_fire_at: datetime,
        jobs: Sequence[Job],
    ) -> bool:
        """One transaction: compare-and-set `next_fire_at` (a racing firer's UPDATE waits
        for this row lock, then finds the new value and changes nothing), then insert the
        slot jobs and NOTIFY on commit."""
        engine = await self._ensure_ready()
        s = self._schema.schedules
        changes: dict[str, Any] = {"next_fire_at": next_fire_at}
        if jobs:
            changes |= {"last_fired_at": jobs[-1].run_at, "last_job_id": jobs[-1].id}
        guarded = (
            sa.update(s)
            .where(
                s.c.name == name,
                s.c.next_fire_at == expected_next_fire_at,
                sa.not_(s.c.paused),
            )
            .values(changes)
            .returning(s.c.name)
        )
        with translated("firing a schedule"):
            async with engine.begin() as conn:
                if (await conn.execute(guarded)).first() is None:
                    return False
                if jobs:
                    await self._insert(conn, jobs, skip_held_keys=True)
        return True

    # -- reads ------------------------------------------------------------------------

    async def _read(self, action: str, read: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run a read on a pooled connection, and once more if that connection died under it.

        Reads change nothing, so a repeat is always safe. SQLAlchemy's pool checks a
        connection before handing it out (`pool_pre_ping`), so this covers a connection
        that dies during the read: SQLAlchemy marks that error `connection_invalidated`
        and has already discarded the connection.
        """
        engine = await self._ensure_ready()
        with translated(action):
            try:
                async with engine.connect() as conn:
                    return await read(conn)
            except sa_exc.DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
            async with engine.connect() as conn:
                return await read(conn)

    async def get(self, job_id: str) -> Job:
        """The job with this id, or `JobNotFound` (also for ids that are not UUIDs)."""
        canonical = canonical_id(job_id)
        if canonical is None:
            raise JobNotFound(str(job_id))
        t = self._schema.jobs

        async def read(conn: AsyncConnection) -> Any:
            return (await conn.execute(sa.select(t).where(t.c.id == canonical))).mappings().first()

        found = await self._read("reading a job", read)
        if found is None:
            raise JobNotFound(job_id)
        return to_job(found)

    async def list(self, query: JobQuery) -> JobPage:
        """A page newest first (`created`, `id` descending) and the total of matches."""
        t = self._schema.jobs
        where: list[sa.ColumnElement[bool]] = []
        if query.topic is not None:
            where.append(t.c.topic == query.topic)
        if query.status is not None:
            where.append(t.c.status == JobStatus(query.status).value)
        budget = query.max_payload_bytes if query.payloads else None
        columns = (
            [t]
            if query.payloads
            else [unread_column(c.name).label(c.name) if c.name in BULKY_FIELDS else c for c in t.c]
        )

        def newest_first(*selected: Any, rows: int) -> sa.Select[Any]:
            return (
                sa.select(*selected)
                .where(*where)
                .order_by(t.c.created.desc(), t.c.id.desc())
                .limit(rows)
                .offset(query.offset)
            )

        async def read(conn: AsyncConnection) -> tuple[Sequence[Any], Any, bool]:
            page = newest_first(*columns, rows=query.limit)
            truncated = False
            if budget is not None:
                # Sizes first (bytes of the JSON text), so rows past the budget are not
                # read; then exactly the rows that fit, by id, whatever changed since.
                size = sum(
                    (
                        sa.func.coalesce(sa.func.octet_length(sa.cast(t.c[name], sa.Text)), 0)
                        for name in BULKY_FIELDS
                    ),
                    sa.literal(0),
                )
                sized = (await conn.execute(newest_first(t.c.id, size, rows=query.limit))).all()
                fitting = rows_within_budget((bytes_ for _, bytes_ in sized), budget)
                truncated = fitting < len(sized)
                ids = [job_id for job_id, _ in sized[:fitting]]
                page = (
                    sa.select(*columns)
                    .where(t.c.id.in_(ids))
                    .order_by(t.c.created.desc(), t.c.id.desc())
                )
            rows = (await conn.execute(page)).mappings().all()
            total = await conn.scalar(sa.select(sa.func.count()).select_from(t).where(*where))
            return rows, total, truncated

        rows, total, truncated = await self._read("listing jobs", read)
        return JobPage(
            items=[to_job(row) for row in rows],
            total=int(total or 0),
            limit=query.limit,
            offset=query.offset,
            payloads=query.payloads,
            truncated=truncated,
        )

    async def count_by_status(self) -> Mapping[JobStatus, int]:
        """How many jobs are in each status."""
        t = self._schema.jobs

        async def read(conn: AsyncConnection) -> Sequence[Any]:
            result = await conn.execute(sa.select(t.c.status, sa.func.count()).group_by(t.c.status))
            return result.all()

        counts = dict.fromkeys(JobStatus, 0)
        for status, count in await self._read("counting jobs", read):
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
        jobs, bad = decode_each(rows)
        if bad:  # one corrupt row must not fail every sweep: move it out of the way
            await self._quarantine(bad, now)
        return jobs

    async def _quarantine(self, bad: Sequence[Unreadable], now: datetime) -> None:
        """Move leased rows that cannot be read to `failed`, guarded by their lease token.

        Their times are reset to valid ones (`last_error` names the old problem), so the
        job can then be read, requeued or deleted like any failed job. A failure here is
        logged, not raised: the readable jobs of the same claim or sweep go on, and the
        row is met again by a later sweep once its lease lapses.
        """
        engine = await self._ensure_ready()
        t = self._schema.jobs
        try:
            with translated("failing unreadable jobs"):
                async with engine.begin() as conn:
                    for row, error in bad:
                        await conn.execute(
                            sa.update(t)
                            .where(
                                t.c.id == row["id"],
                                t.c.status == _LEASED,
                                t.c.lock_token.is_not_distinct_from(row["lock_token"]),
                            )
                            .values(
                                status=GIVEN_UP_STATUS.value,
                                run_at=now,
                                locked_until=None,
                                lock_token=None,
                                last_error=error.failed_reason,
                                updated=now,
                            )
                        )
        except StoreError as exc:
            log.error("could not move unreadable jobs to failed: %s", exc)
            return
        for _, error in bad:
            log.error("%s; moved to failed", error)

    def _expired_query(self, now: datetime, limit: int) -> sa.Select[Any]:
        t = self._schema.jobs
        return (
            sa.select(t)
            .where(t.c.status == _LEASED, t.c.locked_until < now)
            .order_by(*(t.c[name] for name in EXPIRED_ORDER))
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


def _notify_payloads(topics: set[str]) -> list[str]:
    """What to NOTIFY for new work on `topics`: each short topic, or one empty payload.

    A topic is at most 255 characters; NOTIFY carries only short ones, and a batch of
    many topics sends one topic-less notification instead of one each.
    """
    if len(topics) > _MAX_TOPIC_NOTIFIES:
        return [""]
    return sorted({t if len(t.encode()) <= NOTIFY_TOPIC_BYTES else "" for t in topics})


def _without_password(url: str) -> str:
    """`url` fit for an error message: the password, if any, left out."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}@" if parts.username else ""
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}{host or ''}{port}", parts.path, parts.query, ""))
