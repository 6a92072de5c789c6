"""`SQLiteStore`: the `JobStore` port on one SQLite file, shared by several processes.

Every writing port call is one synchronous function run on the store's own writer
thread, over one connection that thread owns: one thread hop per call, however many
statements it runs, and never two write transactions of this store at once. Reads
(get, list, counts, the lease sweep) run on a second thread with a connection of their
own (`PRAGMA query_only`): in WAL mode they read a committed snapshot beside the writer,
so a crowd of readers never queues in front of the worker's claims and result writes.
Other processes coordinate through SQLite's file locks (`BEGIN IMMEDIATE`, WAL, a busy
timeout). The hot calls (insert, claim, update, renew) run their SQL on the sqlite3
connection itself (`_sessions`).

The hop costs more than a small write itself (a commit without a disk flush is tens of
microseconds; waking the thread and then the loop is 60-180). So a small hot call made
while the thread is idle runs on the caller's thread instead, with the connection set
never to wait: if another process holds the write lock it fails at once, rolls back,
and goes to the thread, which waits as usual. WAL checkpoints (which do flush) stay on
the thread, and so does everything under `synchronous=FULL`, where each commit flushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final, TypeVar, cast

from sqlalchemy import Connection, Engine
from sqlalchemy import exc as sa_exc

from jobs_core import (
    CLAIMABLE_STATUSES,
    InvalidOptions,
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
    TopicInfo,
    check_delete_finished,
    check_max_running,
)
from jobs_sqlite import _operations as ops
from jobs_sqlite import _schedules as schedules
from jobs_sqlite._engine import (
    DEFAULT_BUSY_TIMEOUT,
    create_engine,
    parse_url,
    read_transaction,
    write_transaction,
)
from jobs_sqlite._errors import is_busy, translate
from jobs_sqlite._migrations import fetcher, latest_version, migrate, read_version
from jobs_sqlite._rows import TimeTexts
from jobs_sqlite._sessions import Session
from jobs_sqlite._thread import StoreThread

T = TypeVar("T")

#: The most rows a hot call may touch on the event loop's thread (enqueue_many of
#: thousands, or a claim of hundreds, would hold the loop for milliseconds).
LOOP_ROWS: Final = 100
#: Calls on the loop skip SQLite's auto-checkpoint; the thread checkpoints after this many
#: (a drain writes ~7 WAL pages per call: ~3,600 pages, ~14 MiB of WAL at 4 KiB pages).
#: Each checkpoint holds the connection for its disk flushes, which cost the same however
#: many pages it copies, so fewer, larger ones hold the loop back less: 200 calls made
#: the drain wait ~6 us per job, 500 ~3.5 us.
_CHECKPOINT_AFTER: Final = 500
_FLUSHING: Final = frozenset({"FULL", "EXTRA"})


class _FileBusy(Exception):
    """Another connection holds the file's write lock; this call must wait for it."""


class SQLiteStore:
    """Jobs in one SQLite file (or `:memory:` for a single store).

    Connects, switches the file to WAL and creates the schema lazily on first use.
    `watch` reports this store's own writes only; other processes' jobs are found by
    the worker's polling. On a file, reads run on a thread and connection of their own,
    beside the writer. With `inline_writes` (the default), enqueues, claims and
    results of up to `LOOP_ROWS` rows run on the calling thread when the store thread
    is idle and no other process holds the write lock (never under
    `synchronous="FULL"`); pass False to run every call on the store thread.

    The first use migrates the file to this release's schema (`migrate`), under the
    file's write lock; a file newer than this release raises `SchemaTooNew` and is not
    written. With `create_schema=False` nothing is created or migrated: a missing file
    or table raises `SchemaMissing` on first use, an older schema `SchemaBehind` (for
    read-only tools like `jobs stats`).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        read_only: bool = False,
        busy_timeout: timedelta = DEFAULT_BUSY_TIMEOUT,
        synchronous: str = "NORMAL",
        inline_writes: bool = True,
        create_schema: bool = True,
    ) -> None:
        self._path = str(path)
        self._read_only = read_only
        self._create_schema = create_schema
        self._engine = create_engine(
            self._path,
            read_only=read_only,
            busy_timeout=busy_timeout,
            synchronous=synchronous,
            # The connection is opened on the store thread and borrowed by the loop's.
            connect_args={"check_same_thread": False},
        )
        self._busy_timeout_ms = int(busy_timeout.total_seconds() * 1000)
        self._inline = inline_writes and synchronous.upper() not in _FLUSHING
        self._writes_since_checkpoint = 0
        self._wal = not read_only and self._path not in ("", ":memory:")
        self._texts = TimeTexts()  # used by the hot calls only, which run one at a time
        self._thread = StoreThread("jobs-sqlite")
        self._connection: Connection | None = None
        # A file in WAL mode: reads get their own thread and connection. In memory a
        # second connection would be another database; read-only, there is no writer.
        self._separate_reads = self._wal
        self._reads = StoreThread("jobs-sqlite-reads")
        self._reader: Connection | None = None
        self._reader_session: Session | None = None
        self._queued_count: _SharedRead | None = None
        self._raw: Session | None = None
        self._raw_of: object = None  # the sqlite3 connection `_raw` runs on
        self._watchers: set[Callable[[], None]] = set()
        self._watch_lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_url(cls, url: str, *, create_schema: bool = True) -> SQLiteStore:
        """Build from `sqlite:///relative.db`, `sqlite:////absolute.db` (`?mode=ro`)."""
        path, read_only = parse_url(url)
        return cls(path, read_only=read_only, create_schema=create_schema)

    def __repr__(self) -> str:
        mode = ", read-only" if self._read_only else ""
        return f"SQLiteStore({self._path!r}{mode})"

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    @property
    def engine(self) -> Engine:
        """The store's SQLAlchemy engine (set up with `BEGIN IMMEDIATE` and WAL).

        Insert, claim, update and renew run their SQL on the sqlite3 connection directly, so
        SQLAlchemy's statement events do not see them; trace with the sqlite3
        connection's `set_trace_callback` (from the engine's `connect` event) instead.
        """
        return self._engine

    # -- transactional enqueue ---------------------------------------------------

    @staticmethod
    def insert_with(connection: Connection, jobs: Sequence[Job]) -> None:
        """Insert jobs through *your* connection, inside *your* transaction.

        The jobs exist if and only if your transaction commits. Build them with
        `Jobs.prepare(topic, payload, options)`; the schema must exist (open a store on
        the file once, or call `jobs_sqlite.create_schema`). Workers of other processes
        find the jobs at their next poll. Anything but a sync SQLAlchemy `Connection`
        (an `AsyncConnection`, an `Engine`, a raw sqlite3 connection) raises `TypeError`
        before anything is written: an async one would drop the INSERT unawaited.
        """
        if not isinstance(connection, Connection):
            raise TypeError(
                "SQLiteStore.insert_with needs a sync sqlalchemy.engine.Connection inside"
                f" your transaction (engine.begin()), got {_describe(connection)}"
            )
        if connection.dialect.name != "sqlite":
            raise InvalidOptions(
                f"insert_with needs a SQLite connection, got {connection.dialect.name}"
            )
        database = str(connection.engine.url.database or ":memory:")
        try:
            ops.insert_jobs(connection, jobs)
        except sa_exc.DBAPIError as exc:
            raise _explain_missing_schema(translate(exc, database, "inserting jobs")) from exc

    # -- the port ----------------------------------------------------------------

    async def insert(self, jobs: Sequence[Job]) -> Sequence[Job]:
        """Store new jobs in one transaction; an id already stored fails the whole batch.
        Per job, the job holding its place: itself, or the active job of its topic that
        holds its unique key (`INSERT ... ON CONFLICT DO NOTHING` on the partial unique
        index, then the holder read in the same `BEGIN IMMEDIATE` transaction)."""
        if not jobs:
            return []
        answer: list[Job] = await self._call_hot(
            "inserting jobs", len(jobs), ops.insert_all, self._path, self._texts, list(jobs)
        )
        self._notify()
        return answer

    async def get(self, job_id: str) -> Job:
        """The job, or `JobNotFound`."""
        job = await self._call_read("reading a job", ops.get, self._path, job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def list(self, query: JobQuery) -> JobPage:
        """Filter, newest first, page; the total under the same filters."""
        # Rows become `Job`s here, not on the read thread: there the conversion's Python
        # would hold the GIL each time the loop's own SQLite calls let go of it.
        total, rows, truncated = await self._call_read("listing jobs", ops.list_rows, query)
        return ops.page_of(total, rows, truncated, self._path, query)

    async def count_by_status(self) -> Mapping[JobStatus, int]:
        """Counts per status.

        Dashboards poll this: a call made while another one is queued and not yet
        started shares that one's answer (its snapshot begins after both were made, so
        it sees everything either caller had committed).
        """
        loop = asyncio.get_running_loop()
        shared = self._queued_count
        # A done one never started: it failed setting the file up (and must not answer
        # for good).
        if shared is None or shared.started or shared.loop is not loop or shared.done:
            shared = _SharedRead(loop)
            self._queued_count = shared
            shared.future = asyncio.ensure_future(
                self._call_read("counting jobs", shared.run_first, ops.count_by_status)
            )
        future = shared.future
        assert future is not None
        return dict(await asyncio.shield(future))

    async def claim(
        self,
        *,
        topics: Collection[str],
        now: datetime,
        lease: timedelta,
        limit: int,
        caps: Mapping[str, int] | None = None,
    ) -> Sequence[Job]:
        """Lease up to `limit` due pending jobs of `topics` in `CLAIM_ORDER`, each topic
        within its allowance (paused, `max_running`, `caps`)."""
        topics = list(topics)
        if not topics or limit <= 0:
            return []
        return await self._call_hot(
            "claiming jobs",
            limit,
            lambda s: ops.claim(
                s,
                self._path,
                self._texts,
                topics=topics,
                now=now,
                lease=lease,
                limit=limit,
                caps=caps,
            ),
        )

    async def set_paused(self, topic: str, paused: bool) -> None:
        """Pause or resume `topic` for every process using the file."""
        await self._call_hot("pausing a topic", 1, ops.set_policy, topic, bool(paused), None)
        self._notify()

    async def set_max_running(self, topic: str, max_running: int | None) -> None:
        """Set or lift `topic`'s global limit for every process using the file."""
        limit = check_max_running(max_running)
        await self._call_hot("limiting a topic", 1, ops.set_policy, topic, None, limit)
        self._notify()

    async def topics(self) -> Sequence[TopicInfo]:
        """Counts per topic and status, and each topic's policy."""
        return await self._call_read("listing topics", ops.topics)

    async def expired(self, *, now: datetime, limit: int) -> Sequence[Job]:
        """Processing jobs whose lease ran out, oldest lease first."""
        jobs, unreadable = await self._call_read(
            "finding expired leases", lambda c: ops.expired(c, self._path, now=now, limit=limit)
        )
        if unreadable:  # one corrupt row must not fail every sweep: move it out of the way
            await self._call("failing unreadable jobs", ops.quarantine, now, unreadable)
            ops.log_quarantined(unreadable)
        return jobs

    async def update(self, updates: Sequence[JobUpdate]) -> Sequence[bool]:
        """Guarded writes in one transaction; one flag per update."""
        if not updates:
            return []
        flags: list[bool] = await self._call_hot(
            "updating jobs",
            len(updates),
            ops.apply_updates,
            self._path,
            self._texts,
            list(updates),
        )
        if any(
            ok and change.job.status in CLAIMABLE_STATUSES
            for ok, change in zip(flags, updates, strict=True)
        ):
            self._notify()
        return flags

    async def renew(self, renewals: Sequence[JobUpdate]) -> Sequence[Job | None]:
        """Guarded lease renewals in one transaction; per renewal the stored job or None.

        A hot call like `update` (heartbeats renew on the worker's path): inline when
        small and uncontended, else on the store thread."""
        if not renewals:
            return []
        return await self._call_hot(
            "renewing leases", len(renewals), ops.renew, self._path, self._texts, list(renewals)
        )

    async def delete(self, job_id: str, *, expected_status: JobStatus) -> bool:
        """Delete the job if it is still in `expected_status`."""
        return await self._call("deleting a job", ops.delete_job, job_id, expected_status)

    async def delete_finished(
        self, *, statuses: Collection[JobStatus], before: datetime, limit: int
    ) -> int:
        """Delete up to `limit` of the oldest final jobs updated before `before`.

        On the store thread (not inline: a round may touch thousands of rows), in one
        `BEGIN IMMEDIATE` transaction that holds the file's write lock only for its one
        statement."""
        wanted, before, limit = check_delete_finished(statuses, before, limit)
        return await self._call(
            "deleting finished jobs", ops.delete_finished, wanted, before, limit
        )

    # -- schedules (`jobs_core.ScheduleStore`) ------------------------------------

    async def save_schedule(self, schedule: Schedule) -> Schedule:
        """Create or update the schedule (one upsert); the row as stored."""
        return await self._call_hot("saving a schedule", 1, schedules.save, schedule)

    async def get_schedule(self, name: str) -> Schedule:
        """The schedule, or `ScheduleNotFound`."""
        found = await self._call_read("reading a schedule", schedules.get, name)
        if found is None:
            raise ScheduleNotFound(name)
        return found

    async def list_schedules(self) -> Sequence[Schedule]:
        """Every schedule, by name."""
        return await self._call_read("listing schedules", schedules.list_all)

    async def delete_schedule(self, name: str) -> bool:
        """Delete the schedule; whether there was one."""
        return await self._call_hot("deleting a schedule", 1, schedules.delete, name)

    async def set_schedule_paused(
        self, name: str, paused: bool, *, now: datetime, next_fire_at: datetime | None = None
    ) -> Schedule:
        """Store the pause flag (and the next slot, when given)."""
        stored = await self._call_hot(
            "pausing a schedule", 1, schedules.set_paused, name, paused, now, next_fire_at
        )
        if stored is None:
            raise ScheduleNotFound(name)
        return stored

    async def due_schedules(self, *, now: datetime, limit: int) -> Sequence[Schedule]:
        """Unpaused schedules whose next slot came, on the read thread (one query)."""
        return await self._call_read("finding due schedules", schedules.due, now, limit)

    async def fire_schedule(
        self,
        name: str,
        *,
        expected_next_fire_at: datetime,
        next_fire_at: datetime,
        jobs: Sequence[Job],
    ) -> bool:
        """Compare-and-set the next slot and insert the slot jobs, one transaction."""
        fired: bool = await self._call_hot(
            "firing a schedule",
            len(jobs) + 1,
            schedules.fire,
            self._texts,
            name,
            expected_next_fire_at,
            next_fire_at,
            list(jobs),
        )
        if fired and jobs:
            self._notify()
        return fired

    async def watch(self, on_new_work: Callable[[], None]) -> None:
        """Report this store's own inserts and re-queues until cancelled.

        SQLite cannot tell us about other processes' writes; workers poll for those.
        """
        with self._watch_lock:
            self._watchers.add(on_new_work)
        try:
            await asyncio.Event().wait()
        finally:
            with self._watch_lock:
                self._watchers.discard(on_new_work)

    async def close(self) -> None:
        """Finish the calls already made, close the connections and stop the threads."""
        if self._closed:
            return
        self._closed = True
        try:
            # Shielded: a cancelled close still closes each connection on its thread.
            # The reader goes first, so the writer's connection closes last and its
            # close can checkpoint the WAL into the file.
            if self._reads.started:
                await asyncio.shield(self._reads.submit(self._disconnect_reader))
            await asyncio.shield(self._thread.submit(self._disconnect))
        finally:
            self._reads.stop()
            self._thread.stop()

    # -- schema migrations (`jobs_core.MigratableStore`) --------------------------

    async def schema_version(self) -> SchemaVersion:
        """Where the file's schema stands; reads only (a missing file stays missing)."""
        if self._closed:
            raise StoreError(f"SQLite store {self._path} is closed")
        return await self._thread.submit(self._read_schema_version)

    async def migrate(self) -> SchemaVersion:
        """Create or upgrade the file's schema now, step by step under its write lock
        (also with `create_schema=False`: this is the explicit request). Idempotent;
        `SchemaTooNew`, writing nothing, when the file is newer than this release."""
        if self._closed:
            raise StoreError(f"SQLite store {self._path} is closed")
        if self._read_only:
            raise StoreError(f"SQLite store {self._path} is opened read-only: cannot migrate")
        return await self._thread.submit(self._migrate_now)

    def _read_schema_version(self) -> SchemaVersion:
        """On the store thread: the version, through the store's connection if it has
        one, else a read-only connection of its own that cannot create the file."""
        latest = latest_version()
        with self._translated("reading the schema version"):
            if self._connection is not None:
                with read_transaction(self._connection):
                    return SchemaVersion(
                        current=read_version(fetcher(self._connection)), latest=latest
                    )
            if self._path in ("", ":memory:") or not Path(self._path).is_file():
                return SchemaVersion(current=None, latest=latest)
            uri = f"{Path(self._path).absolute().as_uri()}?mode=ro"
            raw = sqlite3.connect(uri, uri=True, timeout=self._busy_timeout_ms / 1000)
            try:
                raw.execute("BEGIN")
                current = read_version(lambda sql, params: raw.execute(sql, params).fetchall())
            finally:
                raw.close()
            return SchemaVersion(current=current, latest=latest)

    def _migrate_now(self) -> SchemaVersion:
        """On the store thread: migrate through the writer's connection."""
        with self._translated("migrating the schema"):
            connection = self._connection
            if connection is None:
                connection = self._connect(migrating=True)
            else:
                if self._inline:
                    self._session_of(connection).wait_when_busy(True)
                self._ensure_schema(connection, migrating=True)
            with read_transaction(connection):
                current = read_version(fetcher(connection))
            return SchemaVersion(current=current, latest=latest_version())

    # -- plumbing ----------------------------------------------------------------

    async def _call(self, doing: str, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(connection, *args)` on the store thread (SQLAlchemy Core calls)."""
        if self._closed:
            raise StoreError(f"SQLite store {self._path} is closed")
        return await self._thread.submit(lambda: self._run(doing, fn, args, self._connection_of))

    def _call_read(self, doing: str, fn: Callable[..., T], *args: object) -> Awaitable[T]:
        """Run `fn(session, *args)`, a read in its own snapshot transaction, on the
        read thread; the writer thread first sets the file up (schema) if it has not.
        Queued before this returns (but for that first setup), so a call made before
        `close()` is answered."""
        if self._closed:
            raise StoreError(f"SQLite store {self._path} is closed")
        if not self._separate_reads:
            return self._thread.submit(lambda: self._run(doing, fn, args, self._session_of))
        if self._connection is None:
            return self._read_after_setup(doing, fn, args)
        return self._reads.submit(lambda: self._run_read(doing, fn, args))

    async def _read_after_setup(
        self, doing: str, fn: Callable[..., T], args: tuple[object, ...]
    ) -> T:
        await self._call(doing, _nothing)
        if self._closed:  # closed while the file was being set up
            raise StoreError(f"SQLite store {self._path} is closed")
        return await self._reads.submit(lambda: self._run_read(doing, fn, args))

    async def _call_hot(self, doing: str, rows: int, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(session, *args)` (the hot calls, see `_sessions`), touching about
        `rows` rows: here if it can be done without waiting, else on the store thread."""
        if self._closed:
            raise StoreError(f"SQLite store {self._path} is closed")
        if self._inline and rows <= LOOP_ROWS and self._thread.try_borrow():
            try:
                if self._connection is not None:
                    return self._run_here(doing, fn, args, self._connection)
            except _FileBusy:
                pass  # the store thread waits for the lock instead
            finally:
                self._thread.give_back()
        return await self._thread.submit(lambda: self._run(doing, fn, args, self._session_of))

    def _run_here(
        self, doing: str, fn: Callable[..., T], args: tuple[object, ...], connection: Connection
    ) -> T:
        """`fn` on the caller's thread, never waiting for a lock: `_FileBusy` when
        another connection held it (the transaction rolled back; the thread retries)."""
        session = self._session_of(connection)
        try:
            session.wait_when_busy(False)
            result = fn(session, *args)
        except sqlite3.Error as exc:
            if is_busy(exc):
                raise _FileBusy from exc
            raise translate(exc, self._path, doing) from exc
        self._writes_since_checkpoint += 1
        if self._writes_since_checkpoint >= _CHECKPOINT_AFTER:
            self._writes_since_checkpoint = 0
            if self._wal:
                self._thread.submit(self._checkpoint)
        return result

    def _checkpoint(self) -> None:
        """On the store thread: the WAL checkpoint the calls on the loop skipped. It has
        the connection to itself, so it can finish and the next write rewinds the WAL
        (one racing with our own writes never would). A failure is harmless: the WAL
        only grows until a later checkpoint succeeds."""
        with contextlib.suppress(sqlite3.Error):
            if self._connection is not None:
                session = self._session_of(self._connection)
                session.wait_when_busy(True)
                session.checkpoint()

    def _run(
        self,
        doing: str,
        fn: Callable[..., T],
        args: tuple[object, ...],
        access: Callable[[Connection], object],
    ) -> T:
        """On the store thread: connect if needed, run `fn`, translate driver errors."""
        with self._translated(doing):
            connection = self._connection or self._connect()
            if self._inline:
                self._session_of(connection).wait_when_busy(True)
            return fn(access(connection), *args)

    def _run_read(self, doing: str, fn: Callable[..., T], args: tuple[object, ...]) -> T:
        """On the read thread: connect the reader if needed, run `fn`, translate errors."""
        with self._translated(doing):
            if self._reader_session is None:
                self._connect_reader()
            return fn(self._reader_session, *args)

    @contextlib.contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        """Driver and SQLAlchemy errors of a call, as `jobs_core` errors naming the file."""
        try:
            yield
        except sqlite3.Error as exc:
            raise translate(exc, self._path, doing) from exc
        except sa_exc.DBAPIError as exc:
            raise translate(exc, self._path, doing) from exc
        except sa_exc.SQLAlchemyError as exc:
            raise StoreError(f"SQLite store {self._path}: {doing} failed: {exc}") from exc

    def _connect_reader(self) -> None:
        """The read thread's connection, refusing writes (a read that wrote would take
        the write lock beside the writer thread's). Its reads run on its sqlite3 cursor
        (`Session`), as the hot calls do: SQLAlchemy's layer cost more than the SQL."""
        connection = self._engine.connect()
        try:
            raw = cast(sqlite3.Connection, connection.connection.dbapi_connection)
            raw.execute("PRAGMA query_only = ON")
            self._reader_session = Session(raw.cursor(), self._busy_timeout_ms)
        except BaseException:
            connection.close()
            raise
        self._reader = connection

    def _disconnect_reader(self) -> None:
        connection, self._reader = self._reader, None
        self._reader_session = None
        with contextlib.suppress(sa_exc.SQLAlchemyError, sqlite3.Error):
            if connection is not None:
                # Closed for good, not handed back to the engine's pool read-only.
                connection.invalidate()
                connection.close()

    @staticmethod
    def _connection_of(connection: Connection) -> Connection:
        return connection

    def _session_of(self, connection: Connection) -> Session:
        """The session on the connection's own sqlite3 connection."""
        # The pysqlite dialect's DBAPI connection is a sqlite3.Connection.
        raw = cast(sqlite3.Connection, connection.connection.dbapi_connection)
        if self._raw is None or raw is not self._raw_of:
            self._raw, self._raw_of = Session(raw.cursor(), self._busy_timeout_ms), raw
        return self._raw

    def _connect(self, *, migrating: bool = False) -> Connection:
        """The writer's connection, the file brought to the latest schema first (or,
        with `create_schema=False` and not `migrating`, checked to be there already)."""
        if not (self._create_schema or migrating) and not _exists(self._path):
            raise SchemaMissing(self._path)  # connecting would create the file
        connection = self._engine.connect()
        try:
            self._ensure_schema(connection, migrating=migrating)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _ensure_schema(self, connection: Connection, *, migrating: bool = False) -> None:
        """Migrate the file to the latest version unless it is there (the common case:
        one read, nothing written). Refuses, writing nothing, a newer file, and an
        older or missing one it may not change (read-only, or `create_schema=False`)."""
        with read_transaction(connection):
            version = read_version(fetcher(connection))
        latest = latest_version()
        if version == latest:
            return
        if version is not None and version > latest:
            raise SchemaTooNew(self._path, version, latest)
        if version is None and not (self._create_schema or migrating):
            raise SchemaMissing(self._path)
        if version is None and self._read_only:
            raise StoreError(
                f"SQLite store {self._path}: the file has no jobs schema and it is opened read-only"
            )
        if version is not None and (self._read_only or not (self._create_schema or migrating)):
            raise SchemaBehind(self._path, version, latest)
        with write_transaction(connection):
            migrate(connection, self._path)

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        self._raw = self._raw_of = None
        with contextlib.suppress(sa_exc.SQLAlchemyError):
            if connection is not None:
                connection.close()
        self._engine.dispose()

    def _notify(self) -> None:
        with self._watch_lock:
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher()


def _exists(path: str) -> bool:
    return path in ("", ":memory:") or Path(path).is_file()


class _SharedRead:
    """A read callers may join until it starts (see `count_by_status`)."""

    __slots__ = ("future", "loop", "started")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.started = False
        self.future: asyncio.Future[Mapping[JobStatus, int]] | None = None

    @property
    def done(self) -> bool:
        """Whether it has answered (or failed) already."""
        return self.future is not None and self.future.done()

    def run_first(
        self, session: Session, read: Callable[[Session], Mapping[JobStatus, int]]
    ) -> Mapping[JobStatus, int]:
        """On the read thread: close the read to newcomers, then run it."""
        self.started = True
        return read(session)


def _nothing(connection: Connection) -> None:
    """A call that only makes sure the writer thread has connected (and set up the file)."""


def _describe(value: object) -> str:
    kind = type(value)
    return "None" if value is None else f"{kind.__module__}.{kind.__qualname__}"


def _explain_missing_schema(error: StoreError) -> StoreError:
    if "no such table" in str(error):
        return StoreError(
            f"{error}; create the schema first (open a SQLiteStore on the file once, or"
            " call jobs_sqlite.create_schema(connection))"
        )
    return error
