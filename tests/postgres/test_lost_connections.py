"""Which driver errors mean "this pooled connection is dead", how far the statement got,
and the hot pool's one retry on a fresh connection (probe D2)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from attrs import evolve

from jobs_core import Job, Jobs, JobStatus, JobUpdate, StoreError, StoreUnavailable
from jobs_core import _transitions as transitions
from jobs_postgres import PostgresStore
from jobs_postgres._errors import Delivery, is_unavailable, lost_connection, translated
from jobs_postgres._pool import HotPool, Retry
from tests.pg_admin import admin_connect, throwaway_database


@pytest.fixture
def own_db() -> Iterator[str]:
    with throwaway_database("jobs_lost") as url:
        yield url


def _rows(url: str, table: str) -> set[str]:
    with admin_connect(url) as admin:
        return {str(row[0]) for row in admin.execute(f"SELECT id FROM {table}")}


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


# -- a repeat after an unknown outcome: the first attempt committed, its answer was lost ----


class AnswerLostPool(HotPool):
    """Runs each statement twice, as `run` does when the first attempt committed but its
    connection died before the answer came back (`repeat` only on the second)."""

    async def run(self, statement: Any, retry: Retry) -> Any:
        assert retry.unknown, "this statement must not be repeated after an unknown outcome"
        async with self.connection() as conn:
            await statement(conn, False)
        async with self.connection(fresh=True) as conn:
            return await statement(conn, True)


class RepeatOnlyPool(HotPool):
    """Runs each statement once, as its repeat (the first attempt's fate unknown)."""

    async def run(self, statement: Any, retry: Retry) -> Any:
        async with self.connection() as conn:
            return await statement(conn, True)


async def _store_with(pool_class: type[HotPool], url: str) -> PostgresStore:
    store = PostgresStore(url, table="jobs")
    await store.count_by_status()  # creates the table
    store._pool = pool_class(url, size=2, timeout=5.0)
    return store


async def test_a_repeated_insert_of_the_same_jobs_succeeds_once(own_db: str) -> None:
    store = await _store_with(AnswerLostPool, own_db)
    jobs = Jobs(store)
    try:
        one = jobs.prepare("t", {"n": 1})
        batch = [jobs.prepare("t", {"n": i}) for i in range(3)]
        await store.insert([one])
        await store.insert(batch)
        assert _rows(own_db, "jobs") == {one.id, *(job.id for job in batch)}
    finally:
        await store.close()


async def test_a_repeated_insert_that_finds_another_job_under_its_id_fails(own_db: str) -> None:
    store = await _store_with(RepeatOnlyPool, own_db)
    jobs = Jobs(store)
    try:
        job = jobs.prepare("t", {"mine": True})
        other = evolve(job, payload={"mine": False})
        async with store.engine.begin() as conn:
            await store.insert_with(conn, [other])
        with pytest.raises(StoreError) as raised:
            await store.insert([job])
        assert not isinstance(raised.value, StoreUnavailable)
        assert (await store.get(job.id)).payload == {"mine": False}
    finally:
        await store.close()


async def test_a_repeated_update_reports_the_change_the_first_attempt_made(own_db: str) -> None:
    store = PostgresStore(own_db, table="jobs")
    jobs = Jobs(store)
    try:
        await store.insert([jobs.prepare("t", {})])
        (claimed,) = await store.claim(
            topics=["t"], now=datetime.now(UTC), lease=timedelta(minutes=5), limit=1
        )
        store._pool = AnswerLostPool(own_db, size=2, timeout=5.0)
        done = JobUpdate(
            job=evolve(
                claimed,
                status=JobStatus.COMPLETED,
                lock_token=None,
                locked_until=None,
                updated=datetime.now(UTC),
            ),
            expected_status=JobStatus.PROCESSING,
            expected_lock_token=claimed.lock_token,
        )
        stale = JobUpdate(
            job=evolve(claimed, status=JobStatus.FAILED, lock_token=None, locked_until=None),
            expected_status=JobStatus.PROCESSING,
            expected_lock_token="someone-else",
        )
        assert list(await store.update([done])) == [True]
        assert list(await store.update([stale])) == [False]  # never applied: still refused
        assert (await store.get(claimed.id)).status is JobStatus.COMPLETED
    finally:
        await store.close()


def _renewal(job: Job, now: datetime) -> JobUpdate:
    return transitions.update(
        job,
        transitions.renew(
            job,
            token=str(job.lock_token),
            now=now,
            lease=timedelta(minutes=5),
            new_token=uuid.uuid4().hex,
        ),
    )


async def test_a_repeated_renewal_returns_the_lease_the_first_attempt_renewed(
    own_db: str,
) -> None:
    """The first attempt committed (the row holds the new token), its answer was lost: the
    repeat's guard accepts the new token, so the call answers the renewed job."""
    store = PostgresStore(own_db, table="jobs")
    jobs = Jobs(store)
    try:
        await store.insert([jobs.prepare("t", {}) for _ in range(2)])
        now = datetime.now(UTC)
        claimed = await store.claim(topics=["t"], now=now, lease=timedelta(minutes=5), limit=2)
        store._pool = AnswerLostPool(own_db, size=2, timeout=5.0)
        renewals = [_renewal(job, now) for job in claimed]
        renewed = [change.job for change in renewals]
        assert list(await store.renew(renewals)) == renewed
        assert [await store.get(job.id) for job in claimed] == renewed
        # A renewal under neither the row's token nor its own is refused both times.
        stale = JobUpdate(
            job=evolve(renewed[0], lock_token=uuid.uuid4().hex),
            expected_status=JobStatus.PROCESSING,
            expected_lock_token="someone-else",
        )
        assert list(await store.renew([stale])) == [None]
        assert await store.get(claimed[0].id) == renewed[0]
    finally:
        await store.close()


async def test_a_batch_renewing_a_job_twice_renews_in_order_and_is_not_repeated(
    own_db: str,
) -> None:
    """Each renewal sees the one before it (as on every store); after an unknown outcome
    its rounds are not repeated (`RepeatRefusedPool` fails if they were)."""
    store = PostgresStore(own_db, table="jobs")
    jobs = Jobs(store)
    try:
        await store.insert([jobs.prepare("t", {})])
        now = datetime.now(UTC)
        (claimed,) = await store.claim(topics=["t"], now=now, lease=timedelta(minutes=5), limit=1)
        first = _renewal(claimed, now)
        second = _renewal(first.job, now + timedelta(seconds=1))
        store._pool = RepeatRefusedPool(own_db, size=2, timeout=5.0)
        assert list(await store.renew([first, second, first])) == [first.job, second.job, None]
        assert await store.get(claimed.id) == second.job
    finally:
        await store.close()


class RepeatRefusedPool(HotPool):
    """Runs each statement once, checking that its policy forbids a repeat after an
    unknown outcome."""

    async def run(self, statement: Any, retry: Retry) -> Any:
        assert not retry.unknown, "this statement may be repeated after an unknown outcome"
        async with self.connection() as conn:
            return await statement(conn, False)
