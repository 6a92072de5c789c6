"""Fixtures for the HTTP API tests: an app over a `MemoryStore`, clients with and without
the superuser token, and helpers that put jobs into each status."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from jobs_core import WIRE_FIELDS, Job, Jobs, JobsConfig, JobStatus, MemoryStore
from jobs_http import create_app

TOKEN = "test-superuser-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

#: The keys of every job the API returns: the model's wire fields and `actions`.
JOB_KEYS = {*WIRE_FIELDS, "actions"}
#: The seed's job keys: each is in every job the API returns, whatever fields are added.
SEED_JOB_KEYS = {
    "id",
    "topic",
    "payload",
    "status",
    "run_at",
    "locked_until",
    "retries",
    "max_retries",
    "last_error",
    "created",
    "updated",
}
#: Never in a job the API returns: the lease's fencing token.
HIDDEN_JOB_KEYS = {"lock_token"}
#: What each status allows a client to do, as every job the API returns says.
ACTIONS = {
    "pending": ["cancel", "delete"],
    "processing": ["cancel"],
    "completed": [],
    "failed": ["requeue", "delete"],
    "cancelled": ["requeue", "delete"],
}
PAGE_KEYS = {"items", "total", "limit", "offset", "payloads", "truncated"}
#: The seed's stats keys: each stays in the stats whatever counts are added.
SEED_STATS_KEYS = {"pending", "processing", "completed", "failed", "total", "success_rate"}
STATS_KEYS = {*SEED_STATS_KEYS, "cancelled"}
ERROR_KEYS = {"status", "message", "data"}
#: The keys of each failed attempt in a job's `errors`.
ATTEMPT_KEYS = {"attempt", "at", "error", "traceback"}
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")

Client = AsyncTestClient[Litestar]


class Boom(RuntimeError):
    """The failure of the test `boom` handler."""


def assert_job(body: Any) -> None:
    """`body` is exactly the documented job shape, with RFC 3339 UTC times; it keeps
    every key of the seed's shape and never shows the lease token."""
    assert isinstance(body, dict)
    assert set(body) == JOB_KEYS
    assert SEED_JOB_KEYS - set(body) == set(), "a key of the seed is missing"
    assert HIDDEN_JOB_KEYS & set(body) == set(), "the lease token is shown"
    assert isinstance(body["id"], str)
    assert isinstance(body["topic"], str)
    assert body["status"] in {status.value for status in JobStatus}
    for key in ("run_at", "created", "updated"):
        assert RFC3339_UTC.fullmatch(body[key]), body[key]
    assert body["locked_until"] is None or RFC3339_UTC.fullmatch(body["locked_until"])
    assert (body["locked_until"] is not None) == (body["status"] == "processing")
    assert type(body["retries"]) is int
    assert type(body["max_retries"]) is int
    assert body["last_error"] is None or isinstance(body["last_error"], str)
    assert body["cancel_requested"] is None or RFC3339_UTC.fullmatch(body["cancel_requested"])
    assert isinstance(body["errors"], list)
    for entry in body["errors"]:
        assert set(entry) == ATTEMPT_KEYS
        assert type(entry["attempt"]) is int
        assert entry["attempt"] >= 1
        assert RFC3339_UTC.fullmatch(entry["at"]), entry["at"]
        assert isinstance(entry["error"], str)
        assert entry["traceback"] is None or isinstance(entry["traceback"], str)
    assert body["result"] is None or body["status"] == "completed"
    assert body["actions"] == ACTIONS[body["status"]]


def assert_error(response: Any, status: int) -> dict[str, Any]:
    """`response` is the one error shape with `status`, and leaks no traceback."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["status"] == status
    assert isinstance(body["message"], str)
    assert body["message"]
    assert isinstance(body["data"], dict)
    assert "Traceback" not in response.text
    assert 'File "' not in response.text
    return body  # type: ignore[no-any-return]


def make_jobs() -> Jobs:
    """A `Jobs` over a fresh `MemoryStore` with `ok`, `boom` and `echo` handlers and fast
    retries; `echo` returns `{"echo": payload}` as its result."""
    jobs = Jobs(MemoryStore(), config=JobsConfig(backoff=lambda n: timedelta(0)))

    async def ok(job: Job) -> None:
        return None

    async def boom(job: Job) -> None:
        raise Boom(f"boom <b>{job.id}</b>")

    async def echo(job: Job) -> dict[str, Any]:
        return {"echo": job.payload}

    jobs.register("ok", ok)
    jobs.register("boom", boom)
    jobs.register("echo", echo)
    return jobs


@pytest.fixture(autouse=True)
def _token_never_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Across the whole API suite, captured at DEBUG: no log record contains the token."""
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        text = f"{record.getMessage()} {record.exc_text or ''}"
        assert TOKEN not in text, f"token logged by {record.name}: {text[:200]}"


@pytest.fixture
def jobs() -> Jobs:
    return make_jobs()


@pytest.fixture
def app(jobs: Jobs) -> Litestar:
    # The worker is driven by the tests (run_once), so job states are deterministic.
    return create_app(jobs, token=TOKEN, run_worker=False)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=app) as c:
        c.headers.update(AUTH)
        yield c


@pytest.fixture
async def anon(app: Litestar) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=app) as c:
        yield c


MakeJob = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def make_job(client: Client, jobs: Jobs) -> MakeJob:
    """Enqueue a job over HTTP and bring it to `status`; returns its JSON from GET."""

    async def make(status: str = "pending", **body: Any) -> dict[str, Any]:
        default = {"failed": "boom", "completed": "ok", "processing": "hold"}.get(status, "ok")
        topic = body.pop("topic", default)
        if status == "failed":
            body.setdefault("max_retries", 0)
        response = await client.post("/api/jobs/enqueue", json={"topic": topic, **body})
        assert response.status_code == 200, response.text
        job_id = response.json()["id"]
        if status in {"completed", "failed"}:
            for _ in range(10):  # every retry is due at once (zero backoff)
                if (await jobs.get(job_id)).status == status:
                    break
                await jobs.run_once()
        elif status == "processing":
            claimed = await jobs.store.claim(
                topics={topic}, now=jobs.clock.now(), lease=timedelta(minutes=5), limit=1
            )
            assert [job.id for job in claimed] == [job_id]
        elif status == "cancelled":
            await jobs.cancel(job_id)
        got = await client.get(f"/api/jobs/{job_id}")
        assert got.json()["status"] == status
        return got.json()  # type: ignore[no-any-return]

    return make
