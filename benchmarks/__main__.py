"""`python -m benchmarks`: run the workloads on SQLite and PostgreSQL, print a Markdown table.

Every throughput figure is printed next to a raw-driver floor measured in the same run
and as a ratio to it; each target is marked met or missed. Progress goes to stderr,
the table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import psutil

from benchmarks._backends import Backend, PostgresBackend, SQLiteBackend
from benchmarks._readers import reads_beside_drain
from benchmarks._report import Figure, summary, table
from benchmarks._workloads import Sizes, core_ceiling, scale, w1_enqueue, w2_drain, w3_wakeup

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
WORKLOADS = ("w1", "w2", "w3", "scale", "reads")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--jobs", type=int, help="jobs for W1 and W2 (20000; --quick 2000)")
    parser.add_argument("--store", default="sqlite,postgres", help="comma list: sqlite,postgres")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="w1,w2,w3,scale,reads")
    parser.add_argument("--quick", action="store_true", help="small sizes, under ~2 minutes")
    parser.add_argument(
        "--scale", help="finished-job counts for Scale, comma list (0,100000,1000000)"
    )
    parser.add_argument(
        "--w1-single", type=int, help="jobs enqueued one by one in W1 (default: --jobs)"
    )
    parser.add_argument("--w3-seconds", type=float, help="W3 duration (10; --quick 3)")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("JOBS_BENCH_PG", DEFAULT_PG),
        help="PostgreSQL server (any database; env JOBS_BENCH_PG)",
    )
    parser.add_argument("--pg-database", default="jobs_bench", help="dropped and recreated")
    parser.add_argument("--sqlite-dir", help="directory for the SQLite files (default: a temp dir)")
    return parser.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    quick = bool(args.quick)
    jobs = args.jobs if args.jobs is not None else (2000 if quick else 20000)
    if args.scale:
        counts = tuple(int(part) for part in args.scale.split(","))
    else:
        counts = (0, 100_000) if quick else (0, 100_000, 1_000_000)
    return Sizes(
        jobs=jobs,
        single=args.w1_single or jobs,
        chunk=min(1000, jobs),
        w3_seconds=args.w3_seconds or (3.0 if quick else 10.0),
        w3_interval=0.02,
        scale=counts,
        scale_rounds=50 if quick else 200,
    )


def backends(args: argparse.Namespace) -> list[Backend]:
    chosen: list[Backend] = []
    for name in (part.strip() for part in args.store.split(",") if part.strip()):
        if name == "sqlite":
            chosen.append(SQLiteBackend(args.sqlite_dir))
        elif name in ("postgres", "postgresql"):
            chosen.append(PostgresBackend(args.pg_url, args.pg_database))
        else:
            raise SystemExit(f"unknown store {name!r} (sqlite, postgres)")
    return chosen


def machine() -> str:
    memory = psutil.virtual_memory().total / 2**30
    return (
        f"{platform.node()}: {os.cpu_count()} CPUs, {memory:.1f} GiB RAM, {platform.platform()},"
        f" Python {platform.python_version()}"
    )


async def run(args: argparse.Namespace) -> list[Figure]:
    sizes = sizes_from(args)
    wanted = {part.strip() for part in args.only.split(",")}
    figures: list[Figure] = []
    described: list[str] = []
    if "w2" in wanted:
        figures += await core_ceiling(sizes)
    for backend in backends(args):
        await backend.setup()
        try:
            described.append(await backend.describe())
            if "w1" in wanted:
                figures += await w1_enqueue(backend, sizes)
            if "w2" in wanted:
                figures += await w2_drain(backend, sizes)
            if "w3" in wanted:
                figures += await w3_wakeup(backend, sizes)
            if "scale" in wanted:
                figures += await scale(backend, sizes)
            if "reads" in wanted:
                figures += await reads_beside_drain(backend, sizes.jobs, sizes.pool)
        finally:
            await backend.teardown()
    print("Machine: " + machine())
    for line in described:
        print("Store: " + line)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    mode = "quick" if args.quick else "full"
    print(f"# Jobs benchmarks ({mode} run, {stamp})\n")
    figures = asyncio.run(run(args))
    print()
    print(table(figures))
    print()
    print(summary(figures))
    print(f"Run took {time.monotonic() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
