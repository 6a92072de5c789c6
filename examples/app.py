"""An example Jobs application: two handlers, one of which fails half the time.

Serve it (API, admin UI and workers in one process, on ./jobs_data/jobs.db):

    uv run jobs serve --app examples.app:setup

(or the API alone with `jobs serve --no-worker`, beside workers of their own:
`uv run jobs worker --app examples.app:setup --processes 2`),

then queue work with the printed token (also in jobs_data/superuser_token):

    curl -s -X POST http://127.0.0.1:8090/api/jobs/enqueue \\
      -H "Authorization: Bearer $(cat jobs_data/superuser_token)" \\
      -H "Content-Type: application/json" \\
      -d '{"topic": "send_email", "payload": {"to": "user@example.com", "subject": "Hello"}}'

`flaky` jobs fail about half of their attempts, so the admin UI shows retries, the
occasional `failed` job, and the requeue button at work.
"""

from __future__ import annotations

import logging
import random

from jobs_core import Job, Jobs

logger = logging.getLogger("examples.app")


class FlakyError(RuntimeError):
    """The simulated intermittent failure of the `flaky` handler."""


async def send_email(job: Job) -> None:
    """Pretend to send an email: log the recipient and succeed."""
    payload = job.payload if isinstance(job.payload, dict) else {}
    logger.info("sending email to %s: %s", payload.get("to", "?"), payload.get("subject", ""))


def flaky(job: Job) -> None:
    """A plain (sync) handler that fails about half the time, to show retries and backoff.

    `{"fail_rate": 0.0}` in the payload makes it always succeed, `1.0` always fail.
    """
    payload = job.payload if isinstance(job.payload, dict) else {}
    rate = payload.get("fail_rate", 0.5)
    if random.random() < float(rate):
        raise FlakyError(f"flaky failure on attempt {job.retries + 1}")


def setup(jobs: Jobs) -> None:
    """Register this example's handlers on the `Jobs` that `jobs serve` built from `--db`."""
    jobs.register("send_email", send_email)
    jobs.register("flaky", flaky)
