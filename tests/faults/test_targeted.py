"""Targeted checks of RELIABILITY §4.6: clock skew within the lease margin, the NOTIFY
payload limit, no pooled connection held while handlers run, and a poison payload."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
from litestar.testing import AsyncTestClient

from jobs_core import (
    CannotDelete,
    Job,
    JobNotFound,
    Jobs,
    JobsConfig,
    JobStatus,
    JobStore,
    MemoryStore,
)
from jobs_core import _transitions as transitions
from jobs_core.testing import FakeClock
from jobs_http import create_app
from jobs_postgres import PostgresStore
from tests.faults.fleet import percentile, publish
from tests.faults.stores import second_connection

T0 = datetime(2030, 1, 1, tzinfo=UTC)
LOCK = timedelta(seconds=30)
# The lease covers the whole timeout (no renewal needed): these tests move fake clocks
# in single steps, as no renewing worker would.
CONFIG = JobsConfig(
    lock_duration=LOCK, lease_duration=timedelta(hours=1), backoff=lambda n: timedelta(0)
)
POOL_TOKEN = "pool-check-token-0123456789abcdefghij"


@pytest.mark.parametrize("skew", [timedelta(0), timedelta(seconds=1), LOCK / 2])
async def test_clock_skew_inside_the_margin_never_steals_a_running_job(
    any_store: JobStore, skew: timedelta
) -> None:
    """B's clock runs `skew` ahead of A's. Leases are judged by the application clock,
    so the tolerated skew is the lease margin (max(5 %, 1 s) = 1.5 s here): below it, B
    never re-claims the job A still runs; far above it (lock/2), it can -- which is why
    hosts must keep their clocks in sync and why the PostgreSQL store warns on skew."""
    clock_a, clock_b = FakeClock(T0), FakeClock(T0 + skew)
    a = Jobs(any_store, clock=clock_a, config=CONFIG)
    b = Jobs(any_store, clock=clock_b, config=CONFIG)
    started, release = asyncio.Event(), asyncio.Event()

    async def hold(job: Job) -> None:
        started.set()
        await release.wait()

    b_runs: list[str] = []

    async def record(job: Job) -> None:
        b_runs.append(job.id)

    a.register("t", hold)
    b.register("t", record)
    await a.enqueue("t", None)
    run_a = asyncio.create_task(a.run_once())
    await asyncio.wait_for(started.wait(), 10)
    # Just before A's own timeout fires: the latest moment A still runs the handler.
    almost = LOCK - timedelta(microseconds=1)
    clock_a.advance(almost)
    clock_b.advance(almost)
    stolen = await b.run_once()
    release.set()
    await asyncio.wait_for(run_a, 10)
    if skew < CONFIG.lock_margin:
        assert stolen == 0
        assert b_runs == []
    else:
        # The documented limit: skew beyond the margin breaks exclusion, so B may take
        # the job A still runs. Whether it does here depends on a race: A's heartbeat
        # may renew (under a new token) between B's read of the expired lease and B's
        # rescue, which is then refused. Either way at most one of them holds the job.
        assert stolen in (0, 1)
        assert len(b_runs) == stolen


async def test_postgres_warns_when_the_host_clock_is_off(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A host clock 5 s ahead of the server's: the store says so when it connects."""
    import jobs_postgres._store as store_module

    class Ahead(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.now(tz) + timedelta(seconds=5)

    monkeypatch.setattr(store_module, "datetime", Ahead)
    store = PostgresStore(pg_url, table="skew_check")
    try:
        await store.count_by_status()
    finally:
        await store.close()
    assert any("clock skew" in r.getMessage() for r in caplog.records)


async def test_notify_carries_no_payload(pg_url: str) -> None:
    """A payload at the 1 MiB limit and 1 000 jobs in one enqueue_many both succeed, and
    every notification a LISTEN client receives is at most 64 bytes."""
    store = PostgresStore(pg_url, table="notify_check")
    jobs = Jobs(store)
    await jobs.enqueue("warm", None)
    listener = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
    notes: list[str] = []
    try:
        await listener.execute(f'LISTEN "{store.channel}"')
        limit = jobs.config.max_payload_size
        big = "x" * (limit - len(json.dumps({"blob": ""})))
        job = await jobs.enqueue("big", {"blob": big})
        stored = (await jobs.get(job.id)).payload
        assert isinstance(stored, dict)
        assert stored["blob"] == big
        many = await jobs.enqueue_many("bulk", [{"n": n} for n in range(1000)])
        assert len(many) == 1000
        gen = listener.notifies(timeout=2.0)
        async for note in gen:
            notes.append(note.payload)
    finally:
        await listener.close()
        await jobs.aclose()
    assert notes, "no notification arrived"
    assert max(len(n.encode()) for n in notes) <= 64
    publish("pg-notify", {"notifications": len(notes), "largest_bytes": max(map(len, notes))})


async def test_no_pooled_connection_is_held_while_handlers_run(pg_url: str) -> None:
    """10 handlers sleep (holding no database work): the pool has at most 2 connections
    checked out meanwhile; 50 concurrent API reads then all succeed (no pool timeout).

    The test client runs the app on its own event loop (in a thread), so the store is
    used only there, and the handlers wait on thread events."""
    producer = PostgresStore(pg_url, table="pool_check")
    await Jobs(producer).enqueue_many("sleep", [{}] * 10)
    await producer.close()
    store = PostgresStore(pg_url, table="pool_check")
    config = JobsConfig(
        worker_pool_size=10,
        batch_size=10,
        poll_interval=timedelta(seconds=0.2),
        shutdown_grace=timedelta(seconds=5),
    )
    jobs = Jobs(store, config=config)
    started: list[str] = []
    all_running, release = threading.Event(), threading.Event()

    async def sleeper(job: Job) -> None:
        started.append(job.id)
        if len(started) == 10:
            all_running.set()
        await asyncio.to_thread(release.wait, 30)

    jobs.register("sleep", sleeper)
    app = create_app(jobs, token=POOL_TOKEN, ui=False)
    samples: list[int] = []
    latencies: list[float] = []
    try:
        async with AsyncTestClient(app=app, timeout=60) as client:
            assert await asyncio.to_thread(all_running.wait, 30)
            for _ in range(20):
                samples.append(_connections_in_use(store))
                await asyncio.sleep(0.05)

            async def read() -> int:
                began = time.monotonic()
                response = await client.get(
                    "/api/jobs", headers={"Authorization": f"Bearer {POOL_TOKEN}"}
                )
                latencies.append(time.monotonic() - began)
                return response.status_code

            codes = await asyncio.gather(*(read() for _ in range(50)))
            release.set()
    finally:
        release.set()
    publish(
        "pg-pool",
        {
            "checked_out_max_during_handlers": max(samples),
            "api_reads": len(codes),
            "api_p99_ms": percentile(latencies, 99) * 1000,
        },
    )
    assert max(samples) <= 2
    assert set(codes) == {200}


def _connections_in_use(store: PostgresStore) -> int:
    """Connections checked out of both of the store's pools (SQLAlchemy's and the hot one)."""
    in_use = store.engine.pool.checkedout()  # type: ignore[attr-defined]
    hot = store._pool
    if hot is not None:
        in_use += hot.in_use
    return int(in_use)


@attrs.frozen
class Order:
    sku: str
    quantity: int


async def test_poison_payload_fails_the_job_not_the_worker(tmp_path: Path) -> None:
    """A handler whose payload does not fit its type: each attempt fails with the
    validation error, the job ends `failed` after its retries, and the worker goes on."""
    clock = FakeClock(T0)
    jobs = Jobs(MemoryStore(), clock=clock, config=CONFIG)
    done: list[int] = []

    async def handle(job: Job) -> None:
        order = job.unmarshal_payload(Order)
        done.append(order.quantity)

    jobs.register("order", handle)
    bad = await jobs.enqueue("order", {"sku": "x", "quantity": "many"})
    good = await jobs.enqueue("order", {"sku": "y", "quantity": 2})
    while await jobs.run_once():
        pass
    failed = await jobs.get(bad.id)
    assert failed.status is JobStatus.FAILED
    assert failed.retries == failed.max_retries
    assert failed.last_error is not None
    assert "quantity" in failed.last_error
    assert (await jobs.get(good.id)).status is JobStatus.COMPLETED
    assert done == [2]


@pytest.mark.parametrize("rounds", [10])
async def test_delete_racing_a_claim_has_one_winner(
    any_store: JobStore, tmp_path: Path, request: pytest.FixtureRequest, rounds: int
) -> None:
    """RELIABILITY §4.8: an API delete and a worker's claim of the same pending job, sent
    together from two connections: exactly one wins (204 or a claimed job, never both),
    and a deleted job is never handed to a worker."""
    pg_url = request.getfixturevalue("pg_url") if isinstance(any_store, PostgresStore) else None
    other = await second_connection(any_store, tmp_path, pg_url)
    jobs = Jobs(any_store)
    outcomes: list[str] = []
    try:
        for i in range(rounds):
            job = await jobs.enqueue("race", {"round": i})
            gate = asyncio.Event()

            async def delete(job_id: str = job.id, gate: asyncio.Event = gate) -> str:
                await gate.wait()
                try:
                    await jobs.delete(job_id)
                except CannotDelete:
                    return "409"
                except JobNotFound:
                    return "404"
                return "204"

            async def claim(gate: asyncio.Event = gate) -> list[Job]:
                await gate.wait()
                return list(
                    await other.claim(
                        topics=["race"], now=jobs.clock.now(), lease=CONFIG.lease, limit=1
                    )
                )

            tasks = [asyncio.create_task(delete()), asyncio.create_task(claim())]
            if i % 2:
                tasks.reverse()
            await asyncio.sleep(0)
            gate.set()
            results = await asyncio.gather(*tasks)
            if i % 2:
                results.reverse()
            status, claimed = results
            assert isinstance(status, str)
            assert isinstance(claimed, list)
            if status == "204":
                assert claimed == []
                with pytest.raises(JobNotFound):
                    await jobs.get(job.id)
            else:
                assert status == "409"
                assert [c.id for c in claimed] == [job.id]
            outcomes.append(status)
            if claimed:  # tidy up: complete it so the next round starts clean
                (c,) = claimed
                assert c.lock_token is not None
                await any_store.update(
                    [
                        transitions.update(
                            c, transitions.complete(c, token=c.lock_token, now=jobs.clock.now())
                        )
                    ]
                )
    finally:
        if other is not any_store:
            await other.close()
    assert len(outcomes) == rounds
