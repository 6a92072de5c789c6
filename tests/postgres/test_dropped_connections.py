"""Dropped connections (probe D2): a pooled connection the server already closed answers
`StoreUnavailable` or is replaced by a retry, never a bare `StoreError` (an HTTP 500).

`pg_terminate_backend` on the store's idle backends leaves asyncpg connections that have
read the server's FATAL but not yet the end of the stream; the next statement on one
fails with `InternalClientError: cannot switch to state 12; another operation (2) is in
progress` before anything is sent.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import pytest
from attrs import evolve
from litestar.testing import AsyncTestClient

from jobs_core import Job, JobQuery, Jobs, JobStatus, JobUpdate, StoreError, StoreUnavailable
from jobs_core import _transitions as transitions
from jobs_http import create_app
from jobs_postgres import PostgresStore
from tests.pg_admin import admin_connect, throwaway_database

T = TypeVar("T")

#: What the store's connections call themselves in `pg_stat_activity`.
APPLICATION_NAME = "jobs_postgres"
_TERMINATE_STORE_BACKENDS = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    f" AND application_name = '{APPLICATION_NAME}'"
)


@pytest.fixture
def own_db() -> Iterator[str]:
    """A database of its own: terminating its backends touches no other test's."""
    with throwaway_database("jobs_dropped") as url:
        yield url


def _terminate(admin: psycopg.Connection[Any]) -> int:
    row = admin.execute(_TERMINATE_STORE_BACKENDS).fetchone()
    assert row is not None
    return int(row[0])


def _rows(admin: psycopg.Connection[Any], table: str) -> set[str]:
    return {str(row[0]) for row in admin.execute(f"SELECT id FROM {table}")}


# -- the real thing: pg_terminate_backend --------------------------------------------------


async def test_enqueue_after_the_pooled_backends_were_terminated(own_db: str) -> None:
    """Fill the hot pool with idle connections, terminate their backends (without letting
    the event loop read the FATALs), enqueue on all of them at once: every enqueue is
    stored, through the retry; none is a `StoreError`."""
    store = PostgresStore(own_db, table="jobs")
    jobs = Jobs(store)
    acknowledged: list[str] = []
    try:
        with admin_connect(own_db) as admin:
            for _ in range(10):
                batch = [jobs.prepare("t", {"n": i}) for i in range(5)]
                await asyncio.gather(*(store.insert([job]) for job in batch))  # 5 idle now
                assert _terminate(admin) >= 1
                batch = [jobs.prepare("t", {"n": i}) for i in range(5)]
                results = await asyncio.gather(
                    *(store.insert([job]) for job in batch), return_exceptions=True
                )
                failures = [r for r in results if isinstance(r, BaseException)]
                assert failures == []
                acknowledged += [job.id for job in batch]
            stored = _rows(admin, "jobs")
        assert set(acknowledged) <= stored
    finally:
        await store.close()


async def test_claim_update_and_reads_after_the_pooled_backends_were_terminated(
    own_db: str,
) -> None:
    """The other hot statements on dead idle connections: a claim, a guarded update and
    the reads answer or say `StoreUnavailable`, never a bare `StoreError`."""
    store = PostgresStore(own_db, table="jobs")
    jobs = Jobs(store)
    await store.insert([jobs.prepare("t", {}) for _ in range(20)])
    try:
        with admin_connect(own_db) as admin:
            for _ in range(5):
                await asyncio.gather(*(store.count_by_status() for _ in range(3)))
                await asyncio.gather(*(store.insert([jobs.prepare("t", {})]) for _ in range(3)))
                _terminate(admin)
                claimed = await _unavailable_or(
                    store.claim(
                        topics=["t"], now=datetime.now(UTC), lease=timedelta(minutes=5), limit=2
                    )
                )
                for job in claimed:
                    done = JobUpdate(
                        job=evolve(job, status=JobStatus.COMPLETED, lock_token=None),
                        expected_status=JobStatus.PROCESSING,
                        expected_lock_token=job.lock_token,
                    )
                    _terminate(admin)
                    await _unavailable_or(store.update([done]))
                _terminate(admin)
                await _unavailable_or(store.count_by_status())
                _terminate(admin)
                if claimed:
                    await _unavailable_or(store.get(claimed[0].id))
    finally:
        await store.close()


async def _unavailable_or(call: Any) -> Any:
    try:
        return await call
    except StoreUnavailable:
        return []
    except StoreError as exc:  # pragma: no cover - the defect
        pytest.fail(f"a dropped connection gave a StoreError, not StoreUnavailable: {exc!r}")


async def test_enqueue_loop_while_backends_are_terminated(own_db: str) -> None:
    """The probe's loop, bounded: 8 enqueuers while the store's backends are terminated
    every 0.15 s for 20 rounds. Each enqueue is acknowledged and stored, or raises
    `StoreUnavailable`; there is no other `StoreError`; rows == acknowledgements."""
    store = PostgresStore(own_db, table="jobs", pool_size=8)
    jobs = Jobs(store)
    await store.insert([jobs.prepare("t", {})])  # the table exists before the loop
    acknowledged: list[str] = []
    unavailable = 0
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def enqueuer() -> None:
        nonlocal unavailable
        while not stop.is_set():
            job: Job = jobs.prepare("t", {"k": "v"})
            try:
                await store.insert([job])
            except StoreUnavailable:
                unavailable += 1
            except StoreError as exc:
                errors.append(exc)
            else:
                acknowledged.append(job.id)

    def terminator(admin: psycopg.Connection[Any]) -> int:
        killed = 0
        for _ in range(20):
            time.sleep(0.15)
            killed += _terminate(admin)
        return killed

    try:
        with admin_connect(own_db) as admin:
            tasks = [asyncio.create_task(enqueuer()) for _ in range(8)]
            try:
                killed = await asyncio.to_thread(terminator, admin)
            finally:
                stop.set()
                await asyncio.gather(*tasks)
            stored = _rows(admin, "jobs")
    finally:
        await store.close()
    print(f"{len(acknowledged)} acknowledged, {unavailable} unavailable, killed {killed}")
    assert killed >= 20
    assert [repr(e) for e in errors] == []
    assert len(acknowledged) > 100
    assert set(acknowledged) <= stored
    assert len(stored) == len(acknowledged) + 1  # + the one before the loop


async def test_http_answers_503_with_retry_after_when_postgres_is_unreachable() -> None:
    """Through the API on a real `PostgresStore` whose server refuses connections:
    enqueue, list and stats are 503 with `Retry-After`, never 500."""
    token = "dropped-connections-token-0123456789"
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/nowhere")
    app = create_app(Jobs(store), token=token, run_worker=False)
    auth = {"Authorization": f"Bearer {token}"}
    try:
        async with AsyncTestClient(app=app) as client:
            responses = [
                await client.post(
                    "/api/jobs/enqueue", json={"topic": "t", "payload": {}}, headers=auth
                ),
                await client.get("/api/jobs", headers=auth),
                await client.get("/api/jobs/stats", headers=auth),
            ]
    finally:
        await store.close()
    assert [r.status_code for r in responses] == [503, 503, 503]
    assert [r.headers.get("retry-after") for r in responses] == ["1", "1", "1"]


# -- a connection killed mid-statement (outcome unknown to the client) ------------------------


async def _killed_while_blocked(url: str, table: str, call: Awaitable[T]) -> T:
    """Run `call` while an admin transaction holds `table` locked, terminate the store
    backend that waits on the lock, then release it; return what `call` gives."""
    waiting = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        f" AND application_name = '{APPLICATION_NAME}' AND wait_event_type = 'Lock'"
    )
    # Two connections: inside the locking transaction pg_stat_activity would not change.
    with admin_connect(url) as locker, admin_connect(url) as watcher:
        with locker.transaction():
            locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            task = asyncio.ensure_future(call)
            deadline = time.monotonic() + 10
            while not (pids := [row[0] for row in watcher.execute(waiting)]):
                assert time.monotonic() < deadline, "the call never waited on the lock"
                await asyncio.sleep(0.01)
            for pid in pids:
                watcher.execute("SELECT pg_terminate_backend(%s)", (pid,))
        return await task


async def test_an_insert_killed_mid_statement_is_repeated_and_stored_once(own_db: str) -> None:
    store = PostgresStore(own_db, table="jobs")
    jobs = Jobs(store)
    try:
        await store.count_by_status()
        job = jobs.prepare("t", {})
        await _killed_while_blocked(own_db, "jobs", store.insert([job]))
        with admin_connect(own_db) as admin:
            assert _rows(admin, "jobs") == {job.id}
    finally:
        await store.close()


async def test_a_claim_killed_mid_statement_is_not_repeated(own_db: str) -> None:
    """Its outcome is unknown to the client, so it answers `StoreUnavailable`; here the
    server rolled it back, and the job is still there to claim."""
    store = PostgresStore(own_db, table="jobs")
    jobs = Jobs(store)
    try:
        job = jobs.prepare("t", {})
        await store.insert([job])
        claim = store.claim(
            topics=["t"], now=datetime.now(UTC), lease=timedelta(minutes=5), limit=1
        )
        with pytest.raises(StoreUnavailable):
            await _killed_while_blocked(own_db, "jobs", claim)
        again = await store.claim(
            topics=["t"], now=datetime.now(UTC), lease=timedelta(minutes=5), limit=1
        )
        assert [j.id for j in again] == [job.id]
    finally:
        await store.close()


async def test_reads_killed_mid_statement_are_repeated(own_db: str) -> None:
    store = PostgresStore(own_db, table="jobs")
    jobs = Jobs(store)
    try:
        job = jobs.prepare("t", {})
        await store.insert([job])
        counts = await _killed_while_blocked(own_db, "jobs", store.count_by_status())
        assert counts[JobStatus.PENDING] == 1
        found = await _killed_while_blocked(own_db, "jobs", store.get(job.id))
        assert found.id == job.id
        page = await _killed_while_blocked(own_db, "jobs", store.list(JobQuery()))
        assert [j.id for j in page.items] == [job.id]
    finally:
        await store.close()


async def test_a_bulk_delete_killed_mid_statement_is_repeated(own_db: str) -> None:
    """Deleting finished jobs is safe to repeat: the call answers, and the jobs are gone."""
    store = PostgresStore(own_db, table="jobs")
    jobs = Jobs(store)
    try:
        now = datetime.now(UTC)
        done = [
            evolve(jobs.prepare("t", {}), status=JobStatus.COMPLETED, updated=now) for _ in range(3)
        ]
        await store.insert(done)
        deleting = store.delete_finished(
            statuses=[JobStatus.COMPLETED], before=now + timedelta(seconds=1), limit=10
        )
        assert await _killed_while_blocked(own_db, "jobs", deleting) == 3
        with admin_connect(own_db) as admin:
            assert _rows(admin, "jobs") == set()
    finally:
        await store.close()


def _renewal(job: Job, now: datetime) -> JobUpdate:
    renewed = transitions.renew(
        job,
        token=str(job.lock_token),
        now=now,
        lease=timedelta(minutes=5),
        new_token=uuid.uuid4().hex,
    )
    return transitions.update(job, renewed)


async def test_a_renewal_killed_mid_statement_is_repeated(own_db: str) -> None:
    """Renewals are repeatable (the guard accepts their own new token): the call answers
    the renewed jobs, and the rows hold them."""
    store = PostgresStore(own_db, table="jobs")
    jobs = Jobs(store)
    try:
        await store.insert([jobs.prepare("t", {}) for _ in range(2)])
        now = datetime.now(UTC)
        claimed = await store.claim(topics=["t"], now=now, lease=timedelta(minutes=5), limit=2)
        renewals = [_renewal(job, now) for job in claimed]
        got = await _killed_while_blocked(own_db, "jobs", store.renew(renewals))
        assert list(got) == [change.job for change in renewals]
        assert [await store.get(job.id) for job in claimed] == list(got)
    finally:
        await store.close()


async def test_a_renewal_batch_naming_a_job_twice_killed_before_its_commit_is_repeated(
    own_db: str,
) -> None:
    """Its rounds run in one explicit transaction, and a connection lost inside it (before
    COMMIT was sent) committed nothing: the error surfaces from the transaction's exit as
    a closed connection, which the pool repeats. The answer is the rounds' own."""
    store = PostgresStore(own_db, table="jobs")
    jobs = Jobs(store)
    try:
        await store.insert([jobs.prepare("t", {})])
        now = datetime.now(UTC)
        (claimed,) = await store.claim(topics=["t"], now=now, lease=timedelta(minutes=5), limit=1)
        first = _renewal(claimed, now)
        second = _renewal(first.job, now)
        got = await _killed_while_blocked(own_db, "jobs", store.renew([first, second]))
        assert list(got) == [first.job, second.job]
        assert await store.get(claimed.id) == second.job
    finally:
        await store.close()
