"""Handlers for the `jobs worker` process tests, as a `Jobs` with a short shutdown grace
and a pool of four.

`jobs worker --app tests.http.worker_app:jobs` uses this instance as is (its store from
`$JOBS_DB_URL`, which the tests set, and which the supervisor gives its children);
`setup` registers the same handlers on the `Jobs` the command builds from `--db`.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta

from jobs_core import Job, Jobs, JobsConfig, open_store

#: Long enough for a signal to reach a worker mid-job, short enough for a test.
GRACE = timedelta(seconds=1.5)
#: Jobs each worker process runs at once.
POOL = 4


async def hold(job: Job) -> None:
    """Never ends by itself: the stop's grace runs out and the job is handed back."""
    await asyncio.Event().wait()


def hold_in_thread(job: Job) -> None:
    """A plain handler that never ends: its thread is abandoned, the job handed back."""
    time.sleep(3600)


async def linger(job: Job) -> None:
    """Ends well within the grace: a stop waits for it, and the job completes."""
    await asyncio.sleep(0.3)


async def slow(job: Job) -> None:
    """Runs long enough to be seen `processing`, ends well within the default grace."""
    await asyncio.sleep(2)


def setup(jobs: Jobs) -> None:
    jobs.register("hold", hold)
    jobs.register("hold_in_thread", hold_in_thread)
    jobs.register("linger", linger)
    jobs.register("slow", slow)


def _jobs() -> Jobs | None:
    url = os.environ.get("JOBS_DB_URL")
    if url is None:  # imported for `setup` only
        return None
    config = JobsConfig(shutdown_grace=GRACE, worker_pool_size=POOL)
    built = Jobs(open_store(url), config=config)
    setup(built)
    return built


jobs = _jobs()
