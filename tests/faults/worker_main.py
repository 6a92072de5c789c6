"""A worker process for the chaos tests: `python -m tests.faults.worker_main --db URL ...`.

It runs one `Jobs` worker whose handler records each execution in the ledger (committed
before it returns) and then sleeps a random 10-200 ms (`--min-ms`/`--max-ms`; a job
whose payload has `seconds` sleeps that long), until SIGTERM, when it stops gracefully
and exits 0. A handler that is cancelled (its lease was lost, or the worker stopped)
stamps that in the ledger too. Optionally it serves the HTTP API too (`--http-port`),
as the SQLite contention test needs.
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
from collections.abc import Iterator
from datetime import timedelta

import attrs

from jobs_core import Job, Jobs, JobsConfig, open_store
from tests.faults.ledger import Ledger, LedgerStore

log = logging.getLogger("tests.faults.worker")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--db", required=True, help="store URL")
    p.add_argument("--ledger", required=True, help="SQLite file of the execution ledger")
    p.add_argument("--topic", default="chaos")
    p.add_argument("--pool", type=int, default=10)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--lock", type=float, default=3.0, help="lock_duration in seconds")
    p.add_argument(
        "--lease", type=float, default=0.0, help="lease_duration in seconds (0: the default)"
    )
    p.add_argument("--poll", type=float, default=0.2, help="poll_interval in seconds")
    p.add_argument("--min-ms", type=float, default=10)
    p.add_argument("--max-ms", type=float, default=200)
    p.add_argument("--grace", type=float, default=10.0)
    p.add_argument("--http-port", type=int, default=0, help="also serve the API here")
    p.add_argument("--token", default="", help="superuser token of the API")
    p.add_argument("--poison-topic", default="", help="jobs of this topic SIGKILL the worker")
    return p.parse_args(argv)


def build(args: argparse.Namespace) -> tuple[Jobs, Ledger]:
    ledger = Ledger(args.ledger)
    config = JobsConfig(
        lock_duration=timedelta(seconds=args.lock),
        poll_interval=timedelta(seconds=args.poll),
        worker_pool_size=args.pool,
        batch_size=args.batch,
        shutdown_grace=timedelta(seconds=args.grace),
    )
    if args.lease:
        config = attrs.evolve(config, lease_duration=timedelta(seconds=args.lease))
    jobs = Jobs(LedgerStore(open_store(args.db), ledger), config=config)
    low, high = args.min_ms / 1000, args.max_ms / 1000

    async def record_and_sleep(job: Job) -> None:
        row = ledger.started(job)
        try:
            await asyncio.sleep(_seconds(job, low, high))
        except asyncio.CancelledError:
            ledger.stopped(row)
            raise
        ledger.finished(row)

    jobs.register(args.topic, record_and_sleep)
    if args.poison_topic:

        async def die(job: Job) -> None:
            ledger.started(job)
            log.warning("job %s kills its worker %d", job.id, os.getpid())
            os.kill(os.getpid(), signal.SIGKILL)

        jobs.register(args.poison_topic, die)
    return jobs, ledger


def _seconds(job: Job, low: float, high: float) -> float:
    """How long the handler runs: the payload's `seconds` if it names them, else a random
    time between `low` and `high`."""
    if isinstance(job.payload, dict) and isinstance(job.payload.get("seconds"), int | float):
        return float(job.payload["seconds"])
    return random.uniform(low, high)


async def run_worker(jobs: Jobs, stop: asyncio.Event) -> None:
    await jobs.start()
    await stop.wait()
    await jobs.stop()


async def run_with_http(jobs: Jobs, stop: asyncio.Event, port: int, token: str) -> None:
    import uvicorn

    from jobs_http import create_app

    app = create_app(jobs, token=token, ui=False)

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # main() owns SIGTERM: it sets `stop`, and we shut down below

    server = Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    serving = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await serving


async def main(argv: list[str]) -> int:
    args = parse(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s {os.getpid()} %(levelname)s %(name)s: %(message)s",
    )
    jobs, ledger = build(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    log.info("worker %d ready", os.getpid())
    try:
        if args.http_port:
            await run_with_http(jobs, stop, args.http_port, args.token)
        else:
            await run_worker(jobs, stop)
    finally:
        await jobs.store.close()
        ledger.close()
    log.info("worker %d stopped cleanly", os.getpid())
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
