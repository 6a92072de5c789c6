"""A worker process for the multi-process tests (run as a script, not collected).

    python _proc.py schema DB GO_FILE         create the schema when GO_FILE appears
    python _proc.py enqueue DB N [TOPIC]      enqueue N jobs and exit
    python _proc.py work DB LEDGER [options]  run a worker until SIGTERM
    python _proc.py unique DB GO_FILE N KEY   when GO_FILE appears, enqueue N jobs of one
                                              unique key (cancelling the holder every
                                              100th time), print how many were new

The worker's handler appends `job_id lock_token pid topic started locked_until` to
LEDGER (its own file, opened with O_APPEND) before it returns, so a run is recorded
even if the process dies next; with `--spans FILE`, also `job_id pid started ended`
(wall-clock times of the handler's own run) to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from jobs_core import CannotCancel, EnqueueOptions, Job, Jobs, JobsConfig, open_store


def _url(db: str) -> str:
    return f"sqlite:///{Path(db).absolute()}"


def barrier(go: str) -> None:
    """Wait until GO appears, so that every process starts its work at the same moment."""
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit("never told to go")
        time.sleep(0.001)


async def schema(db: str) -> None:
    store = open_store(_url(db))
    await store.count_by_status()
    await store.close()
    print("ok", flush=True)


async def enqueue(db: str, count: int, topic: str, max_retries: int | None) -> None:
    jobs = Jobs(open_store(_url(db)))
    options = EnqueueOptions(max_retries=max_retries)
    queued = await jobs.enqueue_many(topic, [{"n": n} for n in range(count)], options)
    await jobs.aclose()
    print(len(queued), flush=True)


async def unique(db: str, count: int, key: str) -> None:
    """Race another process on one unique key; the last call is always an enqueue, so
    the file ends with exactly one active job of the key."""
    jobs = Jobs(open_store(_url(db)))
    options = EnqueueOptions(unique_key=key)
    new = 0
    for n in range(count):
        answer = await jobs.submit("unique", {"n": n, "pid": os.getpid()}, options)
        new += answer.new
        if n % 100 == 50:  # free the key now and then, so both processes take it
            with contextlib.suppress(CannotCancel):  # the other process may have
                await jobs.cancel(answer.job.id)
    await jobs.aclose()
    print(new, flush=True)


async def work(args: argparse.Namespace) -> None:
    config = JobsConfig(
        lock_duration=timedelta(seconds=args.lock),
        poll_interval=timedelta(seconds=args.poll),
        worker_pool_size=args.pool,
        batch_size=args.batch,
        backoff=lambda retry: timedelta(milliseconds=50),
    )
    store = open_store(_url(args.db))
    if args.fire_delay:
        slow_firing(store, args.fire_delay)
    jobs = Jobs(store, config=config)
    ledger = os.open(args.ledger, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    pid = os.getpid()
    low, high = args.sleep_ms

    def note(job: Job) -> None:
        lease = job.locked_until.timestamp() if job.locked_until else 0.0
        line = f"{job.id} {job.lock_token} {pid} {job.topic} {time.time():.6f} {lease:.6f}\n"
        os.write(ledger, line.encode())

    spans = (
        os.open(args.spans, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if args.spans else None
    )

    async def record(job: Job) -> None:
        note(job)
        began = time.time()
        if high > 0:
            await asyncio.sleep(random.uniform(low, high) / 1000)
        if spans is not None:  # the run's start and end, written before it returns
            os.write(spans, f"{job.id} {pid} {began:.6f} {time.time():.6f}\n".encode())

    async def hang(job: Job) -> None:
        note(job)
        await asyncio.Event().wait()

    for topic in args.topics:
        jobs.register(topic, hang if topic == "hang" else record)
    if args.every:  # every process declares the same schedule; start() reconciles it
        jobs.periodic(timedelta(seconds=args.every), topic="tick", misfire="all")(record)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await jobs.start()
    print("started", flush=True)
    await stop.wait()
    await jobs.stop(grace=timedelta(seconds=5))
    await jobs.aclose()
    os.close(ledger)
    if spans is not None:
        os.close(spans)


def slow_firing(store: object, delay: float) -> None:
    """Make the schedule firer wait `delay` between reading due schedules and firing
    them, so the firers of several processes read the same slot and race to fire it."""
    read = store.due_schedules  # type: ignore[attr-defined]

    async def due_slowly(*, now: datetime, limit: int) -> object:
        due = await read(now=now, limit=limit)
        if due:
            await asyncio.sleep(delay)
        return due

    store.due_schedules = due_slowly  # type: ignore[attr-defined]


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s"
    )
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("schema")
    p.add_argument("db")
    p.add_argument("go")
    p = sub.add_parser("enqueue")
    p.add_argument("db")
    p.add_argument("count", type=int)
    p.add_argument("topic", nargs="?", default="work")
    p.add_argument("--max-retries", type=int, default=None)
    p = sub.add_parser("unique")
    p.add_argument("db")
    p.add_argument("go")
    p.add_argument("count", type=int)
    p.add_argument("key")
    p = sub.add_parser("work")
    p.add_argument("db")
    p.add_argument("ledger")
    p.add_argument("--topics", nargs="+", default=["work"])
    p.add_argument("--lock", type=float, default=30.0)
    p.add_argument("--poll", type=float, default=0.1)
    p.add_argument("--pool", type=int, default=16)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--sleep-ms", type=float, nargs=2, default=(0.0, 0.0))
    p.add_argument("--spans", default=None, help="append each run's start and end here")
    p.add_argument("--every", type=float, default=None, help="declare a 'tick' schedule")
    p.add_argument("--fire-delay", type=float, default=0.0, help="see `slow_firing`")
    args = parser.parse_args()
    if args.command == "schema":
        barrier(args.go)
        asyncio.run(schema(args.db))
    elif args.command == "unique":
        barrier(args.go)
        asyncio.run(unique(args.db, args.count, args.key))
    elif args.command == "enqueue":
        asyncio.run(enqueue(args.db, args.count, args.topic, args.max_retries))
    else:
        asyncio.run(work(args))


if __name__ == "__main__":
    main()
