"""Measure asyncpg against psycopg 3 on the claim-and-complete path, through SQLAlchemy.

    uv run python packages/jobs-postgres/bench/driver_choice.py [postgresql://...] [--jobs N]

For each driver: a fresh table, N pending jobs, then rounds of "claim 10, complete
those 10 in one guarded update" until the table is drained. Prints jobs/s and the
median and p99 of each call. The store code is the same; only the driver differs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import attrs

from jobs_core import Job, Jobs, JobStatus, JobUpdate
from jobs_postgres import PostgresStore

LEASE = timedelta(seconds=60)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def run(url: str, driver: str, jobs: int, batch: int) -> dict[str, float]:
    rest = url.split("://", 1)[1]
    table = f"bench_{driver}_{uuid.uuid4().hex[:8]}"
    store = PostgresStore(f"postgresql+{driver}://{rest}", table=table)
    service = Jobs(store)
    await store.insert([service.prepare("bench", {"i": i}) for i in range(jobs)])
    claims: list[float] = []
    completes: list[float] = []
    start = time.perf_counter()
    while True:
        now = datetime.now(UTC)
        t0 = time.perf_counter()
        claimed = await store.claim(topics=["bench"], now=now, lease=LEASE, limit=batch)
        t1 = time.perf_counter()
        if not claimed:
            break
        updates = [
            JobUpdate(
                job=_completed(job, now),
                expected_status=JobStatus.PROCESSING,
                expected_lock_token=job.lock_token,
            )
            for job in claimed
        ]
        flags = await store.update(updates)
        t2 = time.perf_counter()
        assert all(flags)
        claims.append(t1 - t0)
        completes.append(t2 - t1)
    elapsed = time.perf_counter() - start
    async with store.engine.begin() as conn:
        await conn.exec_driver_sql(f"DROP TABLE {table}, {table}_schema_version")
    await store.close()
    return {
        "jobs/s": jobs / elapsed,
        "claim p50 ms": _pct(claims, 0.5),
        "claim p99 ms": _pct(claims, 0.99),
        "complete p50 ms": _pct(completes, 0.5),
        "complete p99 ms": _pct(completes, 0.99),
    }


def _completed(job: Job, now: datetime) -> Job:
    return attrs.evolve(
        job, status=JobStatus.COMPLETED, locked_until=None, lock_token=None, updated=now
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url", nargs="?", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"asyncpg": [], "psycopg": []}
    for _ in range(args.rounds):  # interleaved, so background load hits both alike
        for driver, runs in results.items():
            runs.append(await run(args.url, driver, args.jobs, args.batch))
    for driver, runs in results.items():
        summary = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(driver, "  ".join(f"{k}={v:.2f}" for k, v in summary.items()))


if __name__ == "__main__":
    asyncio.run(main())
