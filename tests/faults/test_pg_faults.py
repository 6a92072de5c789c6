"""PostgreSQL faults (RELIABILITY §4.4): outages, restarts, killed connections.

Outages are made two ways. A TCP proxy between the workers and the server (`proxy.py`)
gives a crash as the clients see it (every connection reset, new ones refused) without
disturbing anything else on the server; the real restart (`pg_ctlcluster ... restart`)
is kept too, because it is what users will live through. Through all of them: no
worker process exits, work resumes within 10 s of the server accepting connections,
nothing is lost, and the HTTP API answers 503 in the JSON error shape meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from jobs_core import Job, Jobs, JobsConfig
from jobs_http import create_app
from jobs_postgres import PostgresStore
from tests.faults import pg
from tests.faults.fleet import Fleet, percentile, publish
from tests.faults.ledger import Ledger, LedgerStore, Report, check_run
from tests.faults.proxy import proxy
from tests.pg_admin import admin_connect

TOKEN = "fault-tests-superuser-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TOPIC = "chaos"
LOCK = 3.0
POLL = 0.2
RESUME_BOUND = 10.0


@pytest.fixture
def db_url() -> Iterator[str]:
    with pg.fresh_database() as url:
        yield url


def _assert_json_503(response: Any, *leaks: str) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert set(body) == {"status", "message", "data"}
    assert body["status"] == 503
    for leak in ("Traceback", "SELECT", "UPDATE", "postgresql://", *leaks):
        assert leak not in response.text, f"{leak!r} leaked into {response.text!r}"


async def _api_while_down(url: str) -> dict[str, float]:
    """The HTTP API over a store that cannot reach its database: 503s, fast, no leaks."""
    jobs = Jobs(PostgresStore(url), config=JobsConfig(lock_duration=timedelta(seconds=LOCK)))
    app = create_app(jobs, token=TOKEN, run_worker=False, ui=False)
    timings: dict[str, float] = {}
    try:
        async with AsyncTestClient(app=app, timeout=60) as client:
            requests = {
                "stats": ("GET", "/api/jobs/stats", None),
                "list": ("GET", "/api/jobs", None),
                "enqueue": ("POST", "/api/jobs/enqueue", {"topic": TOPIC, "payload": {}}),
            }
            for name, (method, path, body) in requests.items():
                began = time.monotonic()
                response = await client.request(method, path, json=body, headers=AUTH)
                timings[name] = time.monotonic() - began
                _assert_json_503(response, url.rsplit("@", maxsplit=1)[-1])
                assert timings[name] < 30, f"{name} took {timings[name]:.1f}s"
    finally:
        await jobs.aclose()
    return timings


async def _check_and_close(
    ids: list[str], jobs: Jobs, ledger_path: Path, fleet: Fleet
) -> tuple[Report, list[float]]:
    """Check the run against the ledger and close the producer; also the store-retry
    backoffs the workers logged."""
    ledger = Ledger(ledger_path)
    try:
        report = await check_run(ids, jobs, ledger)
    finally:
        ledger.close()
        await jobs.aclose()
    backoffs = [float(x) for x in re.findall(r"retrying in ([0-9.]+)s", fleet.log_text())]
    return report, backoffs


def _first_start_after(ledger_path: Path, when: float) -> float | None:
    ledger = Ledger(ledger_path)
    try:
        starts = [e.started_at for e in ledger.executions() if e.started_at >= when]
    finally:
        ledger.close()
    return min(starts) if starts else None


def _starts_between(ledger_path: Path, start: float, end: float) -> int:
    ledger = Ledger(ledger_path)
    try:
        return sum(1 for e in ledger.executions() if start <= e.started_at <= end)
    finally:
        ledger.close()


async def _wait_executions(ledger_path: Path, count: int, timeout: float = 120.0) -> None:
    """Wait until the workers are really at work (`count` executions recorded)."""
    deadline = time.monotonic() + timeout
    while _starts_between(ledger_path, 0, float("inf")) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {count} jobs started in {timeout:.0f}s")
        await asyncio.sleep(0.2)


async def _wait_first_start(ledger_path: Path, when: float, timeout: float = 60.0) -> float:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = _first_start_after(ledger_path, when)
        if found is not None:
            return found - when
        await asyncio.sleep(0.1)
    raise AssertionError(f"no job started within {timeout:.0f}s of the database coming back")


async def _drain(jobs: Jobs, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        stats = await jobs.stats()
        if stats.pending + stats.processing == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not drained in {timeout:.0f}s: {stats}")
        await asyncio.sleep(0.5)


def _unfinished(url: str) -> int:
    """Pending + processing jobs, counted on a connection of its own (psycopg, no
    `jobs_postgres` application name), so no backend kill of a test can reach it."""
    with admin_connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM jobs WHERE status IN ('pending', 'processing')"
        ).fetchone()
    assert row is not None
    return int(str(row[0]))


async def _drain_observed(url: str, timeout: float) -> None:
    """`_drain`, observing through `_unfinished` instead of the store under test."""
    deadline = time.monotonic() + timeout
    while (left := await asyncio.to_thread(_unfinished, url)) > 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"not drained in {timeout:.0f}s: {left} jobs unfinished")
        await asyncio.sleep(0.5)


async def _outage_run(
    name: str,
    *,
    url: str,
    worker_url: str,
    tmp: Path,
    go_down: Callable[[], None],
    come_back: Callable[[], float],
    jobs_count: int,
    before_outage: float,
    outage: float,
    api_url: str,
) -> dict[str, Any]:
    """Workers run through an outage made by `go_down`/`come_back` (returns when ready)."""
    ledger_path = tmp / "ledger.db"
    Ledger(ledger_path).conn.close()
    config = JobsConfig(
        lock_duration=timedelta(seconds=LOCK), poll_interval=timedelta(seconds=POLL)
    )
    jobs = Jobs(PostgresStore(url), config=config)
    ids = [j.id for j in await jobs.enqueue_many(TOPIC, [{"n": n} for n in range(jobs_count)])]
    fleet = Fleet(
        db=worker_url,
        ledger=ledger_path,
        logs=tmp / "logs",
        size=4,
        args=["--pool", "10", "--batch", "10", "--lock", str(LOCK), "--poll", str(POLL)],
    )
    fleet.start()
    try:
        await _wait_executions(ledger_path, jobs_count // 10)
        await asyncio.sleep(before_outage)
        go_down()
        down_at = time.time()
        print(f"database down at {down_at:.3f}")
        api = await _api_while_down(api_url)
        await asyncio.sleep(max(0.0, outage - (time.time() - down_at)))
        assert fleet.dead() == [], f"workers exited during the outage: {fleet.dead()}"
        back_from = time.time()  # the earliest the database may accept connections again
        ready_at = await asyncio.to_thread(come_back)
        print(f"database ready at {ready_at:.3f}")
        during = _starts_between(ledger_path, down_at + LOCK, back_from)
        resume = await _wait_first_start(ledger_path, ready_at)
        await _drain(jobs, 180)
        dead = fleet.dead()
    finally:
        codes = fleet.stop()
    report, backoffs = await _check_and_close(ids, jobs, ledger_path, fleet)
    figures = {
        **report.figures,
        "outage_s": outage,
        "jobs_started_during_outage": during,
        "resume_after_ready_s": resume,
        "api_503_latency_max_s": max(api.values()),
        "store_retry_backoff_max_s": max(backoffs, default=0.0),
        "worker_exits_during_run": dead,
        "worker_exit_codes": codes,
    }
    publish(name, figures)
    report.assert_ok()
    assert dead == [], dead
    assert codes == [0, 0, 0, 0], codes
    assert during == 0, "jobs ran while the database was down: the outage was not real"
    assert resume <= RESUME_BOUND, f"claims resumed {resume:.1f}s after the database came back"
    assert figures["store_retry_backoff_max_s"] <= 5.0
    return figures


@pytest.mark.fault
@pytest.mark.fault_postgres
@pytest.mark.timeout(400)
async def test_outage_mid_run_through_proxy(db_url: str, tmp_path: Path) -> None:
    """The database vanishes for 8 s under 4 busy workers (every connection reset)."""
    with proxy() as p:

        def come_back() -> float:
            p.up()
            return time.time()

        await _outage_run(
            "pg-outage-proxy",
            url=db_url,
            worker_url=p.url(db_url),
            tmp=tmp_path,
            go_down=p.down,
            come_back=come_back,
            jobs_count=2000,
            before_outage=2,
            outage=8,
            api_url=p.url(db_url),
        )


@pytest.mark.fault
@pytest.mark.fault_postgres
@pytest.mark.timeout(400)
async def test_real_server_restart_mid_run(db_url: str, tmp_path: Path) -> None:
    """`pg_ctlcluster stop -m fast`, 5 s down, start: the real thing, mid-run.

    (A plain `restart` is down for well under a second here, too short to look at the
    API during it; stop-wait-start is the same fault with an outage we can observe.)
    """

    def go_down() -> None:
        pg.pg_ctl("stop", "-m", "fast")

    def come_back() -> float:
        """Start the server; the moment it first accepts a connection (polled meanwhile,
        because `pg_ctlcluster start` returns some time after that)."""
        starting = threading.Thread(target=pg.pg_ctl, args=("start",))
        starting.start()
        ready = pg.wait_ready()
        starting.join(120)
        return ready

    try:
        await _outage_run(
            "pg-restart-real",
            url=db_url,
            worker_url=db_url,
            tmp=tmp_path,
            go_down=go_down,
            come_back=come_back,
            jobs_count=5000,
            before_outage=5,
            outage=5,
            api_url=db_url,
        )
    finally:
        pg.ensure_running()


@pytest.mark.fault
@pytest.mark.fault_postgres
@pytest.mark.timeout(300)
async def test_database_down_at_start(db_url: str, tmp_path: Path) -> None:
    """Workers started while the database is unreachable keep retrying (backoff <= 5 s),
    never exit, and process everything within 10 s of it coming back."""
    ledger_path = tmp_path / "ledger.db"
    Ledger(ledger_path).conn.close()
    jobs = Jobs(PostgresStore(db_url))
    ids = [j.id for j in await jobs.enqueue_many(TOPIC, [{"n": n} for n in range(200)])]
    with proxy() as p:
        p.down()
        fleet = Fleet(
            db=p.url(db_url),
            ledger=ledger_path,
            logs=tmp_path / "logs",
            size=2,
            args=["--lock", str(LOCK), "--poll", str(POLL)],
        )
        fleet.start()
        try:
            api = await _api_while_down(p.url(db_url))
            await asyncio.sleep(20)
            assert fleet.dead() == []
            p.up()
            up_at = time.time()
            resume = await _wait_first_start(ledger_path, up_at)
            await _drain(jobs, 60)
            dead = fleet.dead()
        finally:
            codes = fleet.stop()
    report, backoffs = await _check_and_close(ids, jobs, ledger_path, fleet)
    publish(
        "pg-down-at-start",
        {
            **report.figures,
            "resume_after_up_s": resume,
            "api_503_latency_max_s": max(api.values()),
            "store_retry_backoff_max_s": max(backoffs, default=0.0),
            "store_retries_logged": len(backoffs),
            "worker_exit_codes": codes,
        },
    )
    report.assert_ok()
    assert dead == []
    assert codes == [0, 0]
    assert backoffs, "the workers never logged a store retry"
    assert max(backoffs) <= 5.0
    assert resume <= RESUME_BOUND


def _backends(url: str, application: str) -> list[int]:
    database = url.rsplit("/", 1)[-1]
    with admin_connect() as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (database, application),
        ).fetchall()
    return [int(str(r[0])) for r in rows]


def _terminate(pids: list[int]) -> None:
    with admin_connect() as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def _eventually(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def test_listen_connection_killed_ten_times(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With a 30 s poll, a job still starts within 1 s of its enqueue after the LISTEN
    backend was terminated: the listener reconnected and re-LISTENed (10 rounds)."""
    caplog.set_level(logging.INFO, logger="jobs_postgres.listen")
    config = JobsConfig(poll_interval=timedelta(seconds=30))
    worker = Jobs(PostgresStore(db_url), config=config)
    producer = Jobs(PostgresStore(db_url), config=config)  # another "process": NOTIFY only
    started: asyncio.Queue[tuple[str, float]] = asyncio.Queue()

    async def handler(job: Job) -> None:
        started.put_nowait((job.id, time.monotonic()))

    worker.register(TOPIC, handler)
    await producer.enqueue("warm-up", None)  # creates the table
    await worker.start()
    latencies: list[float] = []
    try:
        for _ in range(10):
            (old,) = await _eventually(lambda: _backends(db_url, "jobs_postgres listener"))
            await asyncio.to_thread(_terminate, [old])

            def replaced(old: int = old) -> list[int]:
                return [p for p in _backends(db_url, "jobs_postgres listener") if p != old]

            await _eventually(replaced)
            await asyncio.sleep(0.3)  # let the fresh listener's own catch-up wake pass
            while not started.empty():
                started.get_nowait()
            job = await producer.enqueue(TOPIC, None)
            sent = time.monotonic()
            job_id, at = await asyncio.wait_for(started.get(), 10)
            assert job_id == job.id
            latencies.append(at - sent)
    finally:
        await worker.aclose()
        await producer.aclose()
    relisten = [r for r in caplog.records if "re-established" in r.getMessage()]
    publish(
        "pg-listen-killed",
        {
            "rounds": 10,
            "wake_latency_max_s": max(latencies),
            "wake_latency_p50_s": percentile(latencies, 50),
            "relisten_logged": len(relisten),
        },
    )
    assert max(latencies) <= 1.0, latencies
    assert len(relisten) >= 10


async def test_connection_killed_between_handler_return_and_completion_commit(
    db_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store's backends are terminated just as the completion UPDATE goes out: the
    write is retried, every job completes once, the worker lives on, nothing is stuck."""
    store = PostgresStore(db_url)
    ledger = Ledger(tmp_path / "ledger.db")
    config = JobsConfig(
        lock_duration=timedelta(seconds=LOCK),
        poll_interval=timedelta(seconds=POLL),
        worker_pool_size=4,
        batch_size=4,
    )
    jobs = Jobs(LedgerStore(store, ledger), config=config)
    kills_left = [3]
    killed: list[float] = []

    real_fetch = asyncpg.connection.Connection.fetch

    async def fetch_after_kill(conn: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        # The guarded update is the only statement that returns `v.ord`.
        if "RETURNING v.ord" in query and kills_left[0] > 0:
            kills_left[0] -= 1
            _terminate(_backends(db_url, "jobs_postgres"))
            killed.append(time.time())
        return await real_fetch(conn, query, *args, **kwargs)

    async def handler(job: Job) -> None:
        ledger.started(job)  # row id 1..n; finish stamped right away
        ledger.finished(ledger.conn.execute("SELECT max(rowid) FROM executions").fetchone()[0])

    jobs.register(TOPIC, handler)
    ids = [j.id for j in await jobs.enqueue_many(TOPIC, [{"n": n} for n in range(20)])]
    monkeypatch.setattr(asyncpg.connection.Connection, "fetch", fetch_after_kill)
    await jobs.start()
    try:
        # Observe from outside: the kill terminates every `jobs_postgres` backend, and a
        # poll through the store under test would sometimes be on one of them.
        await _drain_observed(db_url, 60)
        kills_left[0] = 0  # the checks below read through the store: no more kills
        assert jobs.running
        report = await check_run(ids, jobs, ledger)
    finally:
        await jobs.aclose()
        ledger.close()
    retried = [r for r in caplog.records if "job results failed" in r.getMessage()]
    publish(
        "pg-kill-during-complete",
        {
            **report.figures,
            "backends_killed_at_update": len(killed),
            "writes_retried": len(retried),
        },
    )
    assert len(killed) == 3
    assert retried, "no completion write failed: the fault did not hit the commit"
    report.assert_ok()
    assert report.figures["completed"] == 20
