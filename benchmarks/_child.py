"""Worker processes the benchmark spawns, so their figures (and peak RSS) are theirs alone.

python -m benchmarks._child drain URL N POOL   -> drains N queued jobs, prints JSON
python -m benchmarks._child listen URL POLL_S  -> prints "ready", records each job's start
                                                  time until stdin closes, prints JSON
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from datetime import timedelta

from jobs_core import Job, Jobs, JobsConfig, JobStatus, open_store

TOPIC = "bench"


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def register_noop(jobs: Jobs, n: int) -> asyncio.Event:
    """Handle `TOPIC` with a no-op; the event is set once it has run `n` times."""
    handled = asyncio.Event()
    count = [0]

    async def noop(job: Job) -> None:
        count[0] += 1
        if count[0] >= n:
            handled.set()

    jobs.register(TOPIC, noop)
    return handled


async def drain(url: str, n: int, pool: int) -> dict[str, float]:
    """Start a worker on `n` queued jobs; time until all are `completed` in the store."""
    config = JobsConfig(worker_pool_size=pool, batch_size=pool)
    jobs = Jobs(open_store(url), config=config)
    handled = register_noop(jobs, n)
    try:
        before = await jobs.stats()  # connects; the clock starts with a warm store
        if before.pending != n:
            raise RuntimeError(f"expected {n} pending jobs, found {before.pending}")
        started, cpu = time.perf_counter(), time.process_time()
        await jobs.start()
        await handled.wait()
        done = before.completed + n  # jobs completed before the start do not count
        while (await jobs.store.count_by_status()).get(JobStatus.COMPLETED, 0) < done:
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        await jobs.stop()
    finally:
        await jobs.aclose()
    return {
        "jobs_per_s": n / elapsed,
        "seconds": elapsed,
        "cpu_us_per_job": cpu / n * 1e6,
        "peak_rss_mb": peak_rss_mb(),
    }


async def listen(url: str, poll: float) -> dict[str, dict[str, float]]:
    """Run a worker whose handler records when each job started, until stdin closes."""
    config = JobsConfig(poll_interval=timedelta(seconds=poll))
    jobs = Jobs(open_store(url), config=config)
    starts: dict[str, float] = {}

    async def record(job: Job) -> None:
        starts[job.id] = time.time()

    jobs.register(TOPIC, record)
    await jobs.stats()
    await jobs.start()
    await asyncio.sleep(0.3)  # let the LISTEN connection (if any) come up
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await jobs.aclose()
    return {"starts": starts}


def main(argv: list[str]) -> None:
    """Dispatch on the mode word; print the result as one JSON line."""
    mode, url, *rest = argv
    result: object
    if mode == "drain":
        result = asyncio.run(drain(url, int(rest[0]), int(rest[1])))
    elif mode == "listen":
        result = asyncio.run(listen(url, float(rest[0])))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
