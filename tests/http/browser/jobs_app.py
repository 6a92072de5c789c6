"""Handlers for the `jobs serve --app tests.http.browser.jobs_app:setup` the browser tests run.

`email.send` always succeeds; `image.resize` always fails with the error text its payload
names (so a test controls what the UI must show as the last error, `<script>` included);
`video.transcode` runs for an hour (a job to see `processing`); `report.build` has no
handler, so its jobs stay `pending` until someone deletes them.
"""

from __future__ import annotations

import asyncio

from jobs_core import Job, Jobs

SUCCEEDS = "email.send"
FAILS = "image.resize"
RUNS_LONG = "video.transcode"
STAYS_PENDING = "report.build"


class HandlerFailed(RuntimeError):
    """The deliberate failure of the `image.resize` handler."""


async def _succeed(job: Job) -> None:
    del job


async def _fail(job: Job) -> None:
    payload = job.payload
    message = payload.get("error") if isinstance(payload, dict) else None
    raise HandlerFailed(str(message or "resize failed: source image not found"))


async def _run_long(job: Job) -> None:
    del job
    await asyncio.sleep(3600)


def setup(jobs: Jobs) -> None:
    """Register the test handlers on the `Jobs` that `jobs serve` built."""
    jobs.register(SUCCEEDS, _succeed)
    jobs.register(FAILS, _fail)
    jobs.register(RUNS_LONG, _run_long)
