"""The workloads (W1 enqueue, W2 drain, W3 wake-up, Scale), through the public API,
each next to its raw floor measured in the same run."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs

from benchmarks._backends import Backend, Inserter
from benchmarks._child import register_noop
from benchmarks._null_store import NullStore
from benchmarks._report import Figure, at_least
from jobs_core import Job, Jobs, JobsConfig, JobStatus, JobUpdate, open_store

TOPIC = "bench"
#: W1 runs the floor and the store in this many alternating rounds each.
W1_ROUNDS = 10
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Sizes:
    """How much work each workload does."""

    jobs: int
    #: Jobs enqueued one by one in W1 (one commit each: slow on a busy disk).
    single: int
    chunk: int
    w3_seconds: float
    w3_interval: float
    scale: tuple[int, ...]
    scale_rounds: int
    pool: int = 10


def _log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


async def w1_enqueue(backend: Backend, sizes: Sizes) -> list[Figure]:
    """Enqueue one by one and in batches, against raw INSERTs of the same rows.

    The floor and the store take turns (`W1_ROUNDS` rounds each, in ABBA order), so a
    slow patch of the machine (a disk flush, a checkpoint) falls on both alike.
    """
    n, single_n, chunk, name = sizes.jobs, sizes.single, sizes.chunk, backend.name
    for table in ("w1_floor_single", "w1_floor_batch", "w1_single", "w1_batch"):
        await backend.create(table)
    _log(f"{name} W1 one by one, floor and store in turns")
    floor_single, single = await _w1_in_turns(
        backend, "single", single_n, 1, raw=_raw_one_by_one, ours=_enqueue_one_by_one
    )
    _log(f"{name} W1 in batches, floor and store in turns")
    floor_batch, batch = await _w1_in_turns(
        backend, "batch", n, chunk, raw=_raw_in_batches, ours=_enqueue_in_batches
    )
    one = Figure(
        name,
        f"W1 enqueue {single_n:,} one by one",
        single,
        "jobs/s",
        floor_single,
        "raw, 1 commit/job",
        ">= 0.7x floor",
    )
    many = Figure(
        name,
        f"W1 enqueue {n:,} in batches of {chunk}",
        batch,
        "jobs/s",
        floor_batch,
        f"raw, {chunk}/commit",
        ">= 0.5x floor",
    )
    return [_judge(one, 0.7), _judge(many, 0.5)]


async def _w1_in_turns(
    backend: Backend,
    kind: str,
    n: int,
    chunk: int,
    *,
    raw: Callable[[Inserter, int, int, int], Awaitable[float]],
    ours: Callable[[Jobs, int, int, int], Awaitable[float]],
) -> tuple[float, float]:
    """Jobs/s of the raw floor (table `w1_floor_<kind>`) and of the store (`w1_<kind>`)
    inserting `n` jobs `chunk` at a time, the two taking turns."""
    floor = await backend.inserter(f"w1_floor_{kind}")
    try:
        async with Jobs(open_store(backend.url(f"w1_{kind}"))) as jobs:
            await jobs.stats()
            floor_s, ours_s = await _in_turns(
                n,
                lambda first, count: raw(floor, first, count, chunk),
                lambda first, count: ours(jobs, first, count, chunk),
                unit=chunk,
            )
    finally:
        await floor.close()
    return n / floor_s, n / ours_s


async def _raw_one_by_one(floor: Inserter, first: int, count: int, chunk: int) -> float:
    return await floor.one_by_one(first, count)


async def _raw_in_batches(floor: Inserter, first: int, count: int, chunk: int) -> float:
    return await floor.in_batches(first, count, chunk)


async def _enqueue_one_by_one(jobs: Jobs, first: int, count: int, chunk: int) -> float:
    started = time.perf_counter()
    for i in range(first, first + count):
        await jobs.enqueue(TOPIC, {"i": i})
    return time.perf_counter() - started


async def _enqueue_in_batches(jobs: Jobs, first: int, count: int, chunk: int) -> float:
    end = first + count
    started = time.perf_counter()
    for start in range(first, end, chunk):
        await jobs.enqueue_many(TOPIC, [{"i": i} for i in range(start, min(start + chunk, end))])
    return time.perf_counter() - started


async def _in_turns(
    n: int,
    floor: Callable[[int, int], Awaitable[float]],
    ours: Callable[[int, int], Awaitable[float]],
    *,
    unit: int = 1,
) -> tuple[float, float]:
    """Seconds the floor and ours took for `n` jobs each, run in alternating rounds.

    Rounds go floor-ours, ours-floor, ... (ABBA), so a trend over the run (a growing
    table, a warming cache) weighs on both sides alike; each round is a whole number of
    `unit`s (batches).
    """
    units = -(-n // unit)
    rounds = max(1, min(W1_ROUNDS, units))
    floor_s = ours_s = 0.0
    done = 0
    for r in range(rounds):
        end = min(n, (units * (r + 1) // rounds) * unit)
        first, count = done, end - done
        if r % 2 == 0:
            floor_s += await floor(first, count)
            ours_s += await ours(first, count)
        else:
            ours_s += await ours(first, count)
            floor_s += await floor(first, count)
        done = end
    return floor_s, ours_s


def _judge(figure: Figure, wanted: float) -> Figure:
    return Figure(
        figure.store,
        figure.workload,
        figure.value,
        figure.unit,
        figure.floor,
        figure.floor_name,
        figure.target,
        at_least(figure.ratio, wanted),
    )


async def w2_drain(backend: Backend, sizes: Sizes) -> list[Figure]:
    """Drain queued no-op jobs with a worker process (pool 10), against raw drain loops.

    The batched floor drains half its jobs before the worker runs and half after (ABA),
    so a drift of the machine over the run weighs on both alike. The worker drains all
    of its jobs in one process, as a worker starting once would.
    """
    n, name = sizes.jobs, backend.name
    for table in ("w2_floor_single", "w2_floor_batch", "w2", "w2_unanalyzed"):
        await backend.create(table)
    await backend.keep_unanalyzed("w2_unanalyzed")
    _log(f"{name} W2 one-commit-per-job floor")
    await backend.fill_pending("w2_floor_single", n)
    floor_single = await backend.drain_floor("w2_floor_single", n, batch=1)

    async def floor_drain(count: int) -> float:
        """Seconds the batched floor takes to drain `count` freshly queued jobs."""
        await backend.fill_pending("w2_floor_batch", count)
        return count / await backend.drain_floor("w2_floor_batch", count, batch=10)

    half = n // 2
    _log(f"{name} W2 batched floor, first half")
    floor_s = await floor_drain(half)
    _log(f"{name} W2 worker process")
    await _enqueue_for_drain(backend, "w2", n)
    # Statistics as the floors' tables have them.
    await backend.analyze("w2")
    result = await _child("drain", backend.url("w2"), str(n), str(sizes.pool))
    # The same drain on a table nobody analyzed (autovacuum kept off it): a fresh
    # deployment, or a burst of work autovacuum has not caught up with. The floor keeps
    # its statistics: the best the raw driver does is the yardstick of both rows.
    _log(f"{name} W2 worker process, table not analyzed")
    await _enqueue_for_drain(backend, "w2_unanalyzed", n)
    unanalyzed = await _child("drain", backend.url("w2_unanalyzed"), str(n), str(sizes.pool))
    _log(f"{name} W2 batched floor, second half")
    floor_s += await floor_drain(n - half)
    floor_batch = n / floor_s
    rate, rss = float(result["jobs_per_s"]), float(result["peak_rss_mb"])
    cpu = float(result["cpu_us_per_job"])
    wanted = 0.7 if name == "postgres" else 0.5
    drained = _judge(
        Figure(
            name,
            f"W2 drain {n:,} (pool {sizes.pool})",
            rate,
            "jobs/s",
            floor_batch,
            "raw, claim 10 + 1 completion stmt",
            f">= {wanted}x floor",
        ),
        wanted,
    )
    drained_unanalyzed = _judge(
        Figure(
            name,
            f"W2 drain {n:,} (pool {sizes.pool}), table not analyzed",
            float(unanalyzed["jobs_per_s"]),
            "jobs/s",
            floor_batch,
            "raw, claim 10 + 1 completion stmt",
            f">= {wanted}x floor",
        ),
        wanted,
    )
    versus_single = Figure(
        name,
        "W2 drain vs one-commit-per-job floor",
        rate,
        "jobs/s",
        floor_single,
        "raw, 1 claim + 1 commit/job",
    )
    memory = Figure(name, "W2 worker peak RSS", rss, "MiB", target="<= 100 MiB", met=rss <= 100)
    spent = Figure(name, "W2 worker CPU per job (all its threads)", cpu, "us")
    return [drained, drained_unanalyzed, versus_single, spent, memory]


async def _enqueue_for_drain(backend: Backend, table: str, n: int) -> None:
    async with Jobs(open_store(backend.url(table))) as jobs:
        for first in range(0, n, 5000):
            await jobs.enqueue_many(TOPIC, [{"i": i} for i in range(first, min(first + 5000, n))])


async def core_ceiling(sizes: Sizes) -> list[Figure]:
    """W2 on a store that does no I/O: the core's own cost per job, and the most any
    store's W2 can reach on this machine."""
    _log("core-only W2 (no-I/O store)")
    n = sizes.jobs
    store = NullStore()
    jobs = Jobs(store, config=JobsConfig(worker_pool_size=sizes.pool, batch_size=sizes.pool))
    handled = register_noop(jobs, n)
    for first in range(0, n, 5000):
        await jobs.enqueue_many(TOPIC, [{"i": i} for i in range(first, min(first + 5000, n))])
    started, cpu = time.perf_counter(), time.process_time()
    await jobs.start()
    await handled.wait()
    while store.completed < n:
        await asyncio.sleep(0.001)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await jobs.aclose()
    return [
        Figure("none", f"W2 drain {n:,}, core only (no-I/O store)", n / elapsed, "jobs/s"),
        Figure("none", "W2 core CPU per job", cpu / n * 1e6, "us"),
    ]


async def _child(*args: str) -> dict[str, float]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks._child",
        *args,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env=_child_env(),
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker {args[0]} exited with {proc.returncode}")
    parsed: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])
    return parsed


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@dataclass(frozen=True)
class Sent:
    """When one W3 job's `enqueue` was called and when it returned (wall clock)."""

    called: float
    returned: float


async def _enqueue_paced(jobs: Jobs, sizes: Sizes) -> dict[str, Sent]:
    """One enqueue every `w3_interval` for `w3_seconds`; each job's send times."""
    count = int(sizes.w3_seconds / sizes.w3_interval)
    sent: dict[str, Sent] = {}
    start = time.monotonic()
    for i in range(count):
        delay = start + i * sizes.w3_interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        called = time.time()
        job = await jobs.enqueue(TOPIC, {"i": i})
        sent[job.id] = Sent(called, time.time())
    return sent


async def _wait_completed(jobs: Jobs, count: int, patience: float) -> None:
    deadline = time.monotonic() + patience
    while (await jobs.stats()).completed < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


@dataclass(frozen=True)
class Latencies:
    """Seconds from the enqueue call, and from its return (job committed), to handler start."""

    from_call: list[float]
    from_commit: list[float]

    @classmethod
    def of(cls, sent: dict[str, Sent], starts: dict[str, float]) -> Latencies:
        if set(starts) != set(sent):
            raise RuntimeError(f"W3: {len(starts)} of {len(sent)} jobs started")
        return cls(
            [starts[job_id] - s.called for job_id, s in sent.items()],
            [starts[job_id] - s.returned for job_id, s in sent.items()],
        )


async def w3_cross_process(backend: Backend, sizes: Sizes, poll: float) -> Latencies:
    """Enqueue in this process, handler start in a worker process."""
    table = "w3_cross"
    await backend.create(table)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks._child",
        "listen",
        backend.url(table),
        str(poll),
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=_child_env(),
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    ready = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
    if ready.strip() != b"ready":
        raise RuntimeError(f"W3 worker did not start: {ready!r}")
    async with Jobs(open_store(backend.url(table))) as jobs:
        sent = await _enqueue_paced(jobs, sizes)
        await _wait_completed(jobs, len(sent), patience=poll + 5)
    proc.stdin.close()
    out = await proc.stdout.read()
    await proc.wait()
    starts: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])["starts"]
    return Latencies.of(sent, starts)


async def w3_in_process(backend: Backend, sizes: Sizes, poll: float) -> Latencies:
    """Enqueue and handler in the same `Jobs` (its enqueue wakes its own worker)."""
    table = "w3_local"
    await backend.create(table)
    starts: dict[str, float] = {}

    async def record(job: Job) -> None:
        starts[job.id] = time.time()

    config = JobsConfig(poll_interval=timedelta(seconds=poll))
    async with Jobs(open_store(backend.url(table)), config=config) as jobs:
        jobs.register(TOPIC, record)
        await jobs.stats()
        await jobs.start()
        sent = await _enqueue_paced(jobs, sizes)
        await _wait_completed(jobs, len(sent), patience=poll + 5)
    return Latencies.of(sent, starts)


async def w3_wakeup(backend: Backend, sizes: Sizes) -> list[Figure]:
    """Enqueue-to-start latency, p50 and p99, across processes and within one.

    Judged from the moment `enqueue` returns (the job is committed and visible); the
    p50 from the moment it was called, which adds the enqueue's own commit, is shown too.
    """
    poll = 1.0
    name = backend.name
    figures: list[Figure] = []
    _log(f"{name} W3 cross-process")
    cross = await w3_cross_process(backend, sizes, poll)
    _log(f"{name} W3 in-process")
    local = await w3_in_process(backend, sizes, poll)
    bounded = name != "postgres"  # SQLite cannot hear other processes: poll-bounded
    for label, values, p50_limit, p99_limit in (
        (
            f"W3 wake-up, other process ({backend.wakeup})",
            cross,
            None if bounded else 5.0,
            poll * 1000 + 50 if bounded else 20.0,
        ),
        ("W3 wake-up, same process", local, 5.0, 20.0),
    ):
        p50 = _percentile(values.from_commit, 0.5) * 1000
        p99 = _percentile(values.from_commit, 0.99) * 1000
        called = _percentile(values.from_call, 0.5) * 1000
        figures.append(Figure(name, f"{label}: p50 from enqueue call", called, "ms"))
        figures.append(
            Figure(
                name,
                f"{label}: p50 after commit",
                p50,
                "ms",
                target="" if p50_limit is None else f"<= {p50_limit:g} ms",
                met=None if p50_limit is None else p50 <= p50_limit,
            )
        )
        figures.append(
            Figure(
                name,
                f"{label}: p99 after commit",
                p99,
                "ms",
                target=f"<= {p99_limit:g} ms",
                met=p99 <= p99_limit,
            )
        )
    return figures


async def _claim_latency(backend: Backend, table: str, rounds: int) -> tuple[float, float]:
    """Median claim latency and median `stats()` latency (ms) on `table` as it is."""
    store = open_store(backend.url(table))
    jobs = Jobs(store)
    claims: list[float] = []
    stats: list[float] = []
    try:
        lease = timedelta(minutes=5)
        for i in range(rounds):
            job = jobs.prepare(TOPIC, {"i": i})
            await store.insert([job])
            now = datetime.now(UTC)
            started = time.perf_counter()
            (claimed,) = await store.claim(topics=[TOPIC], now=now, lease=lease, limit=10)
            claims.append(time.perf_counter() - started)
            assert claimed.lock_token is not None
            done = attrs.evolve(
                claimed, status=JobStatus.COMPLETED, locked_until=None, lock_token=None, updated=now
            )
            (ok,) = await store.update(
                [
                    JobUpdate(
                        job=done,
                        expected_status=claimed.status,
                        expected_lock_token=claimed.lock_token,
                    )
                ]
            )
            assert ok
        for _ in range(max(3, rounds // 20)):
            started = time.perf_counter()
            await jobs.stats()
            stats.append(time.perf_counter() - started)
    finally:
        await store.close()
    return statistics.median(claims) * 1000, statistics.median(stats) * 1000


async def scale(backend: Backend, sizes: Sizes) -> list[Figure]:
    """Claim and stats latency with 0 ... N finished jobs in the table."""
    name = backend.name
    results: list[tuple[int, float, float]] = []
    for size in sizes.scale:
        table = f"scale_{size}"
        await backend.create(table)
        _log(f"{name} Scale: loading {size:,} finished jobs")
        await backend.fill_finished(table, size)
        results.append((size, *await _claim_latency(backend, table, sizes.scale_rounds)))
    figures: list[Figure] = []
    base_claim = results[0][1]
    for size, claim_ms, stats_ms in results:
        if size == results[-1][0] and size != results[0][0]:
            ratio = claim_ms / base_claim if base_claim else float("inf")
            figures.append(
                Figure(
                    name,
                    f"Scale: claim p50 at {size:,} finished ({ratio:.2f}x at 0)",
                    claim_ms,
                    "ms",
                    target="<= 1.5x latency at 0",
                    met=ratio <= 1.5,
                )
            )
        else:
            figures.append(Figure(name, f"Scale: claim p50 at {size:,} finished", claim_ms, "ms"))
        figures.append(Figure(name, f"Scale: stats() p50 at {size:,} finished", stats_ms, "ms"))
    return figures
