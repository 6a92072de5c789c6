"""Handlers for the `jobs serve --app tests.http.browser.jobs_app:setup` the browser tests run.

`email.send` always succeeds; `image.resize` always fails with the error text its payload
names (so a test controls what the UI must show as the last error, `<script>` included);
`video.transcode` runs for an hour (a job to see `processing`); `invoice.sync` fails its
first two attempts with the error its payload names, then returns the payload's `result`
(a job with an attempt history and a result); `pdf.render` runs out of its 0.3 s timeout
(an attempt without a traceback); `report.build` has no handler, so its jobs stay
`pending` until someone deletes them.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from jobs_core import Job, Jobs

SUCCEEDS = "email.send"
FAILS = "image.resize"
RUNS_LONG = "video.transcode"
FAILS_TWICE = "invoice.sync"
TIMES_OUT = "pdf.render"
STAYS_PENDING = "report.build"


class HandlerFailed(RuntimeError):
    """The deliberate failure of the `image.resize` handler."""


async def _succeed(job: Job) -> None:
    del job


async def _fail(job: Job) -> None:
    payload = job.payload
    message = payload.get("error") if isinstance(payload, dict) else None
    raise HandlerFailed(str(message or "resize failed: source image not found"))


async def _fail_twice_then_return(job: Job) -> Any:
    payload = job.payload if isinstance(job.payload, dict) else {}
    if job.retries < 2:
        _call_the_ledger(str(payload.get("error", "ledger unavailable")), job.retries + 1)
    return payload.get("result")


def _call_the_ledger(error: str, attempt: int) -> None:
    """A frame of its own, so the traceback has more than the handler's line."""
    raise HandlerFailed(f"{error} (attempt {attempt})")


async def _run_long(job: Job) -> None:
    del job
    await asyncio.sleep(3600)


def setup(jobs: Jobs) -> None:
    """Register the test handlers on the `Jobs` that `jobs serve` built."""
    jobs.register(SUCCEEDS, _succeed)
    jobs.register(FAILS, _fail)
    jobs.register(RUNS_LONG, _run_long)
    jobs.register(FAILS_TWICE, _fail_twice_then_return)
    jobs.register(TIMES_OUT, _run_long, timeout=timedelta(seconds=0.3))
