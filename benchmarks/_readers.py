"""SQLite: the drain with read traffic beside it (issue 14, defect 4).

A worker (pool 10) drains N queued no-op jobs, once with nobody reading and once with
16 closed-loop readers in the same process (8 calling `jobs.stats()`, 8 calling
`jobs.list(...)` with the probe's four queries). Reads run on their own thread and
connection, so the drain with readers should stay within 2x of the drain without, and
`stats()` answer within 100 ms meanwhile. (`stats()` on 1M finished jobs is in Scale.)
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from benchmarks._backends import Backend
from benchmarks._child import register_noop
from benchmarks._report import Figure
from jobs_core import Jobs, JobsConfig, JobStatus, open_store

TOPIC = "bench"
STATS_READERS = 8
LIST_READERS = 8
#: Drains without readers and with them, in this order (ABBA): a slow patch of the
#: shared machine then weighs on both sides alike.
ROUNDS = (False, True, True, False)


def _log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


@dataclass
class _Reads:
    """Latencies (seconds) the readers saw."""

    stats: list[float] = field(default_factory=list)
    lists: list[float] = field(default_factory=list)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _list_call(jobs: Jobs, n: int, rng: random.Random) -> Callable[[], Awaitable[object]]:
    """One of the probe's list queries, picked at random."""
    choice = rng.randrange(4)
    if choice == 0:
        return lambda: jobs.list(limit=20)
    if choice == 1:
        return lambda: jobs.list(status=JobStatus.PENDING, limit=50)
    if choice == 2:
        offset = rng.randrange(n)
        return lambda: jobs.list(offset=offset, limit=20)
    return lambda: jobs.list(topic=TOPIC, status=JobStatus.COMPLETED, limit=100)


async def _reader(
    call: Callable[[], Callable[[], Awaitable[object]]], into: list[float], done: asyncio.Event
) -> None:
    """Closed loop: the next call as soon as the last one answered."""
    while not done.is_set():
        started = time.perf_counter()
        await call()()
        into.append(time.perf_counter() - started)


async def drain_with_readers(url: str, n: int, pool: int, readers: bool) -> tuple[float, _Reads]:
    """Seconds to drain the `n` jobs queued at `url`, and what the readers saw."""
    config = JobsConfig(worker_pool_size=pool, batch_size=pool)
    reads = _Reads()
    rng = random.Random(14)
    async with Jobs(open_store(url), config=config) as jobs:
        for first in range(0, n, 5000):
            await jobs.enqueue_many(TOPIC, [{"i": i} for i in range(first, min(first + 5000, n))])
        handled = register_noop(jobs, n)
        done = asyncio.Event()
        tasks = []
        if readers:
            tasks += [
                asyncio.create_task(_reader(lambda: jobs.stats, reads.stats, done))
                for _ in range(STATS_READERS)
            ]
            tasks += [
                asyncio.create_task(_reader(lambda: _list_call(jobs, n, rng), reads.lists, done))
                for _ in range(LIST_READERS)
            ]
        started = time.perf_counter()
        await jobs.start()
        await handled.wait()
        while (await jobs.store.count_by_status())[JobStatus.COMPLETED] < n:
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        done.set()
        await asyncio.gather(*tasks)
        await jobs.stop()
    return elapsed, reads


async def reads_beside_drain(backend: Backend, jobs: int, pool: int) -> list[Figure]:
    """The drain with and without 16 readers (SQLite only)."""
    name = backend.name
    if name != "sqlite":
        return []
    figures: list[Figure] = []
    times = {False: 0.0, True: 0.0}
    seen = _Reads()
    for number, readers in enumerate(ROUNDS):
        table = f"r_drain_{number}"
        await backend.create(table)
        _log(f"{name} drain {jobs:,} with {16 if readers else 0} readers")
        elapsed, reads = await drain_with_readers(backend.url(table), jobs, pool, readers)
        times[readers] += elapsed / ROUNDS.count(readers)
        seen.stats += reads.stats
        seen.lists += reads.lists
    ratio = times[True] / times[False]
    figures.append(Figure(name, f"Drain {jobs:,}, no readers (mean of 2)", times[False], "s"))
    figures.append(
        Figure(
            name,
            f"Drain {jobs:,} with 16 readers, 8 stats + 8 list (mean of 2; {ratio:.2f}x)",
            times[True],
            "s",
            target="<= 2x no readers",
            met=ratio <= 2,
        )
    )
    p99 = _percentile(seen.stats, 0.99) * 1000
    figures.append(
        Figure(
            name,
            f"stats() p99 during those drains ({len(seen.stats):,} calls;"
            f" p50 {_percentile(seen.stats, 0.5) * 1000:.1f} ms)",
            p99,
            "ms",
            target="< 100 ms",
            met=p99 < 100,
        )
    )
    list_p99 = _percentile(seen.lists, 0.99) * 1000
    figures.append(
        Figure(name, f"list() p99 during those drains ({len(seen.lists):,} calls)", list_p99, "ms")
    )
    return figures
