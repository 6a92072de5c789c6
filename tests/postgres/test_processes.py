"""Several worker processes on one database: exactly-once completion, wake-up latency,
limits and pauses across processes, a race on one unique key, and a schedule's slots
fired once each by three processes."""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

from jobs_core import Jobs
from jobs_postgres import SCHEMA_VERSION, PostgresStore
from tests.schedule_slots import check_one_job_per_slot

from .procs import check_ledger, spawn, wait_for, worker_options, workers


def _deadlocks(db: psycopg.Connection[Any]) -> int:
    row = db.execute(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    ).fetchone()
    assert row is not None
    return int(row[0])


async def test_four_processes_drain_ten_thousand_jobs_exactly_once(
    pg_url: str, table: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """10 000 jobs, 4 worker processes: each job runs once, and no two runs overlap."""
    store = PostgresStore(pg_url, table=table)
    maker = Jobs(store)
    await store.insert([maker.prepare("t", {"i": i}) for i in range(10_000)])
    await store.close()
    options = worker_options(pg_url, table, poll_interval=0.2, pool=50, batch=50)
    deadlocks = _deadlocks(db)
    started = time.monotonic()
    with workers(4, options, log=tmp_path / "workers.log"):
        wait_for(
            db,
            f"SELECT count(*) FROM {table} WHERE status = 'completed'",
            10_000,
            timeout=150,
            every=0.2,
        )
    elapsed = time.monotonic() - started
    report = check_ledger(db, table, options["ledger"])
    assert report == {"jobs": 10_000, "runs": 10_000, "finished_twice": 0}
    pids = db.execute(f"SELECT count(DISTINCT pid) FROM {options['ledger']}").fetchone()
    assert pids == (4,), "every worker process took a share"
    assert _deadlocks(db) == deadlocks, "claims and result writes deadlocked"
    print(f"drained 10 000 jobs with 4 processes in {elapsed:.1f}s")


async def test_enqueue_in_one_process_wakes_a_worker_in_another(
    pg_url: str, table: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """With a 1 s poll, LISTEN/NOTIFY starts the handler within 100 ms at the median."""
    options = worker_options(pg_url, table, poll_interval=1.0, ledger_at_start=True)
    store = PostgresStore(pg_url, table=table)
    maker = Jobs(store)
    await store.count_by_status()  # table exists before the worker starts
    latencies: list[float] = []
    with workers(1, options, log=tmp_path / "worker.log"):
        wait_for(
            db,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'jobs_postgres listener' AND query ILIKE 'LISTEN%'",
            1,
            timeout=10,
        )
        for _ in range(9):
            time.sleep(0.3)  # let the worker go idle between jobs (it polls every 1 s)
            job = maker.prepare("t", {})
            sent = time.time()
            await store.insert([job])
            started = wait_for(
                db,
                f"SELECT extract(epoch FROM started) FROM {options['ledger']}"
                f" WHERE job_id = '{job.id}'",
                None,
                timeout=5,
                every=0.005,
                negate=True,
            )
            latencies.append(float(started) - sent)
    await store.close()
    median = statistics.median(latencies)
    print(f"wake-up latency across processes: median {median * 1000:.1f} ms, {latencies}")
    assert median < 0.1


def test_schema_created_by_eight_processes_at_once(
    pg_url: str, db: psycopg.Connection[Any]
) -> None:
    """Eight processes creating the same schema on an empty database all succeed, once."""
    schema = f"s_{uuid.uuid4().hex[:8]}"
    url = f"{pg_url}?table=jobs&schema={schema}"
    procs = [spawn({"store_url": url, "mode": "init"}) for _ in range(8)]
    codes = [proc.wait(60) for proc in procs]
    assert codes == [0] * 8
    rows = db.execute(f"SELECT version FROM {schema}.jobs_schema_version ORDER BY 1").fetchall()
    assert rows == [(step,) for step in range(1, SCHEMA_VERSION + 1)]


def max_overlap(spans: list[tuple[Any, Any]]) -> int:
    """The most runs in progress at one instant: (started, finished) spans, an end
    counted before a start at the same instant (a slot freed, then taken)."""
    events = sorted([(s, 1) for s, _ in spans] + [(f, -1) for _, f in spans], key=lambda e: e)
    most = running = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


async def test_a_global_limit_of_two_holds_across_three_processes(
    pg_url: str, table: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """`max_running=2`, three worker processes of 5 slots each: the execution ledger
    (each run's start and end, written by the handler) never has 3 runs at once, and
    every job still completes exactly once."""
    store = PostgresStore(pg_url, table=table)
    maker = Jobs(store)
    await store.set_max_running("t", 2)
    await store.insert([maker.prepare("t", {"sleep": 0.05}) for _ in range(40)])
    await store.close()
    options = worker_options(
        pg_url, table, poll_interval=0.05, pool=5, batch=5, ledger_at_start=True
    )
    with workers(3, options, log=tmp_path / "workers.log"):
        wait_for(
            db,
            f"SELECT count(*) FROM {table} WHERE status = 'completed'",
            40,
            timeout=120,
            every=0.1,
        )
    report = check_ledger(db, table, options["ledger"])
    assert report == {"jobs": 40, "runs": 40, "finished_twice": 0}
    spans = db.execute(f"SELECT started, finished FROM {options['ledger']}").fetchall()
    assert max_overlap(spans) == 2, "the limit was exceeded, or never reached"


async def test_a_pause_in_one_process_stops_claims_in_another(
    pg_url: str, table: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Paused here, a worker in another process claims none of the topic's jobs (its
    claim of a job of another topic, queued after them, shows it has claimed since), and
    runs them all once resumed."""
    options = worker_options(pg_url, table, poll_interval=0.2, topics=["t", "sentinel"])
    store = PostgresStore(pg_url, table=table)
    maker = Jobs(store)
    try:
        with workers(1, options, log=tmp_path / "workers.log"):
            await store.set_paused("t", True)
            await store.insert([maker.prepare("t", {}) for _ in range(5)])
            await store.insert([maker.prepare("sentinel", {})])
            wait_for(
                db,
                f"SELECT count(*) FROM {table} WHERE topic = 'sentinel' AND status = 'completed'",
                1,
                timeout=60,
            )
            held = db.execute(
                f"SELECT status, count(*) FROM {table} WHERE topic = 't' GROUP BY status"
            ).fetchall()
            assert held == [("pending", 5)]
            await store.set_paused("t", False)
            wait_for(
                db,
                f"SELECT count(*) FROM {table} WHERE topic = 't' AND status = 'completed'",
                5,
                timeout=60,
            )
    finally:
        await store.close()


def test_two_processes_enqueueing_one_unique_key_leave_exactly_one_active_job(
    pg_url: str, table: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Each enqueues the same key 500 times (cancelling the holder every 100th time):
    every job stored is counted as new by exactly one call, no two were ever active
    together (the index would have refused it), and one active job is left."""
    go = tmp_path / "go"
    options = {"store_url": f"{pg_url}?table={table}", "mode": "unique", "go": str(go)}
    procs = [spawn({**options, "count": 500, "key": "the-key"}) for _ in range(2)]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    go.touch()
    new = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        new += int(out.split()[-1])
    rows = db.execute(
        f"SELECT status, count(*) FROM {table} WHERE unique_key = 'the-key' GROUP BY status"
    ).fetchall()
    statuses = dict(rows)
    assert statuses.get("pending") == 1
    assert set(statuses) <= {"pending", "cancelled"}
    assert sum(statuses.values()) == new
    assert new >= 2  # the key was freed and taken again


async def test_three_processes_fire_each_slot_of_a_one_second_schedule_once(
    pg_url: str, table: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Three workers, each declaring the same `every=1s` schedule (reconciled at
    start-up), fire it for 10 s: one job per slot, no slot twice or skipped, every slot
    job run once, and the stored schedule names the last slot and its job. Each firer
    waits 0.2 s between reading the due schedule and firing, so all three race."""
    every = timedelta(seconds=1)
    options = worker_options(pg_url, table, poll_interval=0.05, every=1.0, fire_delay=0.2)
    with workers(3, options, log=tmp_path / "workers.log"):
        wait_for(
            db,
            f"SELECT count(*) >= 11 FROM {table} WHERE topic = 'tick'",
            True,
            timeout=60,
            every=0.25,
        )
    fired = [
        (run_at, str(job_id))
        for run_at, job_id in db.execute(
            f"SELECT run_at, id FROM {table} WHERE topic = 'tick' ORDER BY run_at"
        ).fetchall()
    ]
    check_one_job_per_slot(fired, every=every, at_least=11)
    row = db.execute(
        f"SELECT last_fired_at, last_job_id, next_fire_at FROM {table}_schedules"
    ).fetchone()
    assert row == (fired[-1][0], fired[-1][1], fired[-1][0] + every)
    twice = db.execute(
        f"SELECT count(*) FROM (SELECT job_id FROM {options['ledger']}"
        " GROUP BY job_id HAVING count(*) > 1) AS t"
    ).fetchone()
    assert twice == (0,), "a slot job ran twice"
