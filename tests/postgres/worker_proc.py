"""A worker process for the multi-process tests: `python worker_proc.py '<json options>'`.

Runs `Jobs(open_store(url))` with one handler that records every attempt in a ledger
table outside the jobs table: `(job_id, lock_token, pid, started, locked_until, finished)`,
written before the handler returns (or, with `ledger_at_start`, when it starts and
completed with `finished` when it returns). The payload steers it: `sleep`
(seconds) and `hang_first` (sleep an hour on the first attempt, to be killed). It
handles `topics` (a list), or the one `topic` (default "t"). With `every` (seconds) it
also declares `@jobs.periodic(every, topic="tick", misfire="all")`, recorded alike;
`fire_delay` (seconds) makes its firer wait between reading due schedules and firing
them, so several processes race for each slot.
Prints `ready` once the worker runs; SIGTERM stops it gracefully (exit code 0).

With `"mode": "init"` it only creates the schema and exits (concurrent-install test).
With `"mode": "unique"` it prints `ready`, waits for the file `go`, enqueues `count` jobs
of topic "unique" with the unique key `key` (cancelling the holder every 100th time),
prints how many were new and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from jobs_core import CannotCancel, EnqueueOptions, Job, Jobs, JobsConfig, open_store
from jobs_core.ports import JobStore

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS {ledger} (
    job_id uuid NOT NULL,
    lock_token text NOT NULL,
    pid integer NOT NULL,
    started timestamptz NOT NULL,
    finished timestamptz,
    locked_until timestamptz NOT NULL,
    PRIMARY KEY (job_id, lock_token)
)
"""


async def race_on_a_key(store: JobStore, options: dict[str, Any]) -> int:
    """Race other processes on one unique key; the last call is an enqueue, so the table
    ends with exactly one active job of the key."""
    jobs = Jobs(store)
    await store.count_by_status()  # the schema, before the race
    print("ready", flush=True)
    go = Path(options["go"])
    while not go.exists():
        await asyncio.sleep(0.001)
    unique = EnqueueOptions(unique_key=options["key"])
    new = 0
    for n in range(options["count"]):
        answer = await jobs.submit("unique", {"n": n, "pid": os.getpid()}, unique)
        new += answer.new
        if n % 100 == 50:  # free the key now and then, so every process takes it
            with contextlib.suppress(CannotCancel):  # another process may have
                await jobs.cancel(answer.job.id)
    await jobs.aclose()
    print(new, flush=True)
    return 0


def slow_firing(store: object, delay: float) -> None:
    """Wait `delay` between the firer's read of due schedules and its firing."""
    read = store.due_schedules  # type: ignore[attr-defined]

    async def due_slowly(*, now: datetime, limit: int) -> object:
        due = await read(now=now, limit=limit)
        if due:
            await asyncio.sleep(delay)
        return due

    store.due_schedules = due_slowly  # type: ignore[attr-defined]


async def main(options: dict[str, Any]) -> int:
    store = open_store(options["store_url"])
    if options.get("fire_delay"):
        slow_firing(store, float(options["fire_delay"]))
    if options.get("mode") == "init":
        await store.count_by_status()  # first use creates the schema
        await store.close()
        return 0
    if options.get("mode") == "unique":
        return await race_on_a_key(store, options)
    ledger = options["ledger"]
    pool = await asyncpg.create_pool(options["plain_url"], min_size=1, max_size=4)
    assert pool is not None
    async with pool.acquire() as conn, conn.transaction():
        # CREATE TABLE IF NOT EXISTS races with itself across processes (duplicate
        # pg_type key); the advisory lock makes the workers create the ledger one by one.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", ledger)
        await conn.execute(LEDGER_DDL.format(ledger=ledger))
    pid = os.getpid()

    at_start = bool(options.get("ledger_at_start"))

    async def handler(job: Job) -> None:
        started = datetime.now(UTC)
        assert job.lock_token is not None
        assert job.locked_until is not None
        row = (job.id, job.lock_token, pid, started, job.locked_until)
        insert = (
            f"INSERT INTO {ledger} (job_id, lock_token, pid, started, locked_until, finished)"
            " VALUES ($1, $2, $3, $4, $5, $6)"
        )
        if at_start:
            await pool.execute(insert, *row, None)
        payload = job.payload if isinstance(job.payload, dict) else {}
        if payload.get("hang_first") and job.retries == 0:
            await asyncio.sleep(3600)
        delay = payload.get("sleep", 0)
        if delay:
            await asyncio.sleep(float(delay))
        if at_start:
            await pool.execute(
                f"UPDATE {ledger} SET finished = $3 WHERE job_id = $1 AND lock_token = $2",
                job.id,
                job.lock_token,
                datetime.now(UTC),
            )
        else:  # one write per run: the row lands before the handler returns
            await pool.execute(insert, *row, datetime.now(UTC))

    config = JobsConfig(
        lock_duration=timedelta(seconds=options.get("lock_duration", 60)),
        poll_interval=timedelta(seconds=options.get("poll_interval", 1.0)),
        worker_pool_size=options.get("pool", 10),
        batch_size=options.get("batch", 10),
        backoff=lambda _n: timedelta(seconds=options.get("retry_delay", 0.1)),
    )
    jobs = Jobs(store, config=config)
    for topic in options.get("topics", [options.get("topic", "t")]):
        jobs.register(topic, handler)
    if options.get("every"):
        every = timedelta(seconds=options["every"])
        jobs.periodic(every, topic="tick", misfire="all")(handler)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await jobs.start()
    print("ready", flush=True)
    await stop.wait()
    await jobs.stop()
    await jobs.aclose()
    await pool.close()
    return 0


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s [{os.getpid()}] %(name)s %(message)s"
    )
    sys.exit(asyncio.run(main(json.loads(sys.argv[1]))))
