"""Several processes on one file: concurrent schema creation, a restart that rescues a
killed worker's job, four workers draining 5,000 jobs exactly once, two processes
racing on one unique key, and three firing one schedule's slots once each."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jobs_core import LOCK_EXPIRED, EnqueueOptions, Job, Jobs, JobsConfig, JobStatus
from jobs_core.testing import FakeClock
from jobs_sqlite import SCHEMA_VERSION, SQLiteStore
from tests.schedule_slots import check_one_job_per_slot
from tests.sqlite import _harness as h


def test_eight_processes_create_the_schema_at_once(tmp_path: Path) -> None:
    """All succeed on a brand-new file, and it records each migration step once."""
    db = tmp_path / "jobs.db"
    h.open_schema_at_once(db, 8)
    with sqlite3.connect(db) as raw:
        legacy = raw.execute("SELECT component, version FROM jobs_schema").fetchall()
        steps = raw.execute("SELECT version FROM jobs_schema_version").fetchall()
        assert legacy == [("jobs", SCHEMA_VERSION)]
        assert steps == [(n,) for n in range(1, SCHEMA_VERSION + 1)]
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_restart_sees_every_job_and_rescues_a_killed_workers_job(tmp_path: Path) -> None:
    """Jobs outlive the process that enqueued them; a job `processing` in a process
    killed with SIGKILL is rescued once its lease ran out: retried to `completed`, or
    `failed` with "lock expired" when it had no retries left. Nothing stays stuck."""
    db, ledger = tmp_path / "jobs.db", tmp_path / "w.ledger"
    assert h.run("enqueue", db, "50", "work").strip() == "50"
    assert h.run("enqueue", db, "1", "hang", "--max-retries", "1").strip() == "1"
    assert h.run("enqueue", db, "1", "hang", "--max-retries", "0").strip() == "1"

    worker = h.spawn("work", db, ledger, "--topics", "hang", "--lock", "1", "--poll", "0.05")
    h.wait_line(worker, "started")
    h.until(lambda: len(h.ledger(tmp_path)) == 2, timeout=30, what="both hang jobs to start")
    worker.kill()  # SIGKILL: no cleanup, both jobs stay `processing`
    worker.wait(timeout=10)
    assert h.statuses(db) == Counter({"pending": 50, "processing": 2})

    later = FakeClock(datetime.now(UTC) + timedelta(hours=1))  # every lease has run out
    jobs = Jobs(SQLiteStore(db), clock=later, config=JobsConfig(batch_size=100))
    ran: list[str] = []

    def handle(job: Job) -> None:
        ran.append(job.topic)

    jobs.register("work", handle)
    jobs.register("hang", handle)
    assert await jobs.run_once() == 50  # rescues the two, runs the 50 that were due
    later.advance(timedelta(hours=1))  # past the rescued job's retry backoff
    assert await jobs.run_once() == 1
    assert await jobs.run_once() == 0
    assert Counter(ran) == Counter({"work": 50, "hang": 1})

    page = await jobs.list(topic="hang")
    by_retries = {job.max_retries: job for job in page.items}
    assert by_retries[1].status is JobStatus.COMPLETED
    assert by_retries[1].retries == 1
    assert by_retries[0].status is JobStatus.FAILED
    assert by_retries[0].last_error == LOCK_EXPIRED
    stats = await jobs.stats()
    assert (stats.completed, stats.failed, stats.pending, stats.processing) == (51, 1, 0, 0)
    await jobs.aclose()


async def test_four_processes_drain_5000_jobs_exactly_once(tmp_path: Path) -> None:
    """Every job runs once and ends `completed`; no lock error reaches a log or a caller."""
    db = tmp_path / "jobs.db"
    store = SQLiteStore(db)
    jobs = Jobs(store)
    queued = await jobs.enqueue_many("work", [{"n": n} for n in range(5000)], EnqueueOptions())
    await jobs.aclose()

    workers = [
        h.spawn("work", db, tmp_path / f"{i}.ledger", "--pool", "32", "--batch", "32")
        for i in range(4)
    ]
    try:
        for proc in workers:
            h.wait_line(proc, "started")
        await asyncio.to_thread(
            h.until,
            lambda: h.statuses(db)["completed"] == 5000,
            timeout=120,
            what="5,000 completed jobs",
            every=0.25,
        )
    finally:
        logs = [h.stop(proc) for proc in workers]

    runs = h.ledger(tmp_path)
    assert len(runs) == 5000
    assert {run.job_id for run in runs} == {job.id for job in queued}
    assert len({run.pid for run in runs}) >= 2, "the work was shared"
    assert h.statuses(db) == Counter({"completed": 5000})
    for log in logs:
        assert h.bad_log_lines(log) == [], log


def _max_overlap(spans: list[tuple[float, float]]) -> int:
    """The most runs in progress at one instant (an end before a start at a tie)."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    most = running = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


async def test_a_global_limit_of_two_holds_across_three_processes(tmp_path: Path) -> None:
    """`max_running=2`, three workers of 8 slots each on one file: the execution ledger
    (each handler's start and end) never has 3 runs at once; every job runs once."""
    db = tmp_path / "jobs.db"
    store = SQLiteStore(db)
    jobs = Jobs(store)
    await jobs.set_limit("work", max_running=2)
    queued = await jobs.enqueue_many("work", [{"n": n} for n in range(40)])
    await jobs.aclose()
    spans = tmp_path / "runs.spans"
    workers = [
        h.spawn(
            "work",
            db,
            tmp_path / f"{i}.ledger",
            *("--pool", "8", "--batch", "8", "--poll", "0.05"),
            *("--sleep-ms", "20", "60", "--spans", str(spans)),
        )
        for i in range(3)
    ]
    try:
        for proc in workers:
            h.wait_line(proc, "started")
        await asyncio.to_thread(
            h.until,
            lambda: h.statuses(db)["completed"] == 40,
            timeout=120,
            what="40 completed jobs",
            every=0.1,
        )
    finally:
        logs = [h.stop(proc) for proc in workers]
    runs = h.ledger(tmp_path)
    assert sorted(run.job_id for run in runs) == sorted(job.id for job in queued)
    lines = [line.split() for line in spans.read_text().splitlines()]
    assert len(lines) == 40
    assert _max_overlap([(float(s), float(e)) for _, _, s, e in lines]) == 2
    for log in logs:
        assert h.bad_log_lines(log) == [], log


async def test_a_pause_in_one_process_stops_claims_in_another(tmp_path: Path) -> None:
    """Paused here, a worker in another process claims none of the topic's jobs: its
    claim of a job of another topic, queued after them, shows it has claimed since;
    resumed, it runs them all."""
    db = tmp_path / "jobs.db"
    jobs = Jobs(SQLiteStore(db))
    await jobs.enqueue("other", {})  # the file and its schema, before the worker opens it
    worker = h.spawn(
        "work", db, tmp_path / "w.ledger", "--topics", "work", "other", "--poll", "0.05"
    )
    try:
        h.wait_line(worker, "started")
        await asyncio.to_thread(
            h.until, lambda: h.statuses(db) == Counter({"completed": 1}), timeout=60, what="1"
        )
        await jobs.pause("work")
        await jobs.enqueue_many("work", [{"n": n} for n in range(5)])
        await jobs.enqueue("other", {})
        await asyncio.to_thread(
            h.until,
            lambda: h.statuses(db)["completed"] == 2,
            timeout=60,
            what="the job queued after the paused ones",
        )
        assert h.statuses(db) == Counter({"completed": 2, "pending": 5})
        await jobs.resume("work")
        await asyncio.to_thread(
            h.until,
            lambda: h.statuses(db) == Counter({"completed": 7}),
            timeout=60,
            what="the resumed jobs",
        )
    finally:
        log = h.stop(worker)
        await jobs.aclose()
    assert h.bad_log_lines(log) == [], log


def test_two_processes_enqueueing_one_unique_key_leave_exactly_one_active_job(
    tmp_path: Path,
) -> None:
    """Each enqueues the same key 500 times (cancelling the holder every 100th time):
    every job either stored is counted as new by exactly one call, no two were ever
    active together (the index would have refused it), and one active job is left."""
    db = tmp_path / "jobs.db"
    assert h.run("enqueue", db, "0").strip() == "0"  # the schema, before the race
    go = db.with_name("go")
    procs = [h.spawn("unique", db, go, "500", "the-key") for _ in range(2)]
    for proc in procs:
        h.wait_line(proc, "ready")
    go.touch()
    new = 0
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert h.bad_log_lines(err) == []
        new += int(out.split()[-1])
    with sqlite3.connect(db) as raw:
        rows = raw.execute("SELECT status FROM jobs WHERE unique_key = 'the-key'").fetchall()
    statuses = Counter(status for (status,) in rows)
    assert statuses["pending"] == 1
    assert set(statuses) <= {"pending", "cancelled"}
    assert sum(statuses.values()) == new
    assert new >= 2  # the key was freed and taken again


async def test_three_processes_fire_each_slot_of_a_one_second_schedule_once(
    tmp_path: Path,
) -> None:
    """Three workers, each declaring the same `every=1s` schedule (reconciled at
    start-up), fire it for 10 s: one job per slot, no slot twice or skipped, and the
    stored schedule names the last slot and its job. Each firer waits 0.2 s between
    reading the due schedule and firing it, so every slot is raced for by all three."""
    db = tmp_path / "jobs.db"
    every = timedelta(seconds=1)
    await SQLiteStore(db).close()
    workers = [
        h.spawn(
            "work",
            db,
            tmp_path / f"{i}.ledger",
            *("--poll", "0.05", "--every", "1", "--fire-delay", "0.2"),
        )
        for i in range(3)
    ]
    try:
        for proc in workers:
            h.wait_line(proc, "started")
        await asyncio.to_thread(
            h.until,
            lambda: _tick_count(db) >= 11,
            timeout=60,
            what="11 slots of the schedule",
            every=0.25,
        )
    finally:
        logs = [h.stop(proc) for proc in workers]
    with sqlite3.connect(db) as raw:
        rows = raw.execute("SELECT run_at, id FROM jobs WHERE topic = 'tick' ORDER BY run_at")
        fired = [(datetime.fromisoformat(run_at), job_id) for run_at, job_id in rows]
        last_at, last_id, next_at = raw.execute(
            "SELECT last_fired_at, last_job_id, next_fire_at FROM jobs_schedules"
        ).fetchone()
    check_one_job_per_slot(fired, every=every, at_least=11)
    assert (datetime.fromisoformat(last_at), last_id) == fired[-1]
    assert datetime.fromisoformat(next_at) == fired[-1][0] + every
    ran = Counter(run.job_id for run in h.ledger(tmp_path) if run.topic == "tick")
    assert set(ran.values()) <= {1}, "a slot job ran twice"
    for log in logs:
        assert h.bad_log_lines(log) == [], log


def _tick_count(db: Path) -> int:
    with sqlite3.connect(db, timeout=30) as raw:
        (n,) = raw.execute("SELECT count(*) FROM jobs WHERE topic = 'tick'").fetchone()
    return int(n)
