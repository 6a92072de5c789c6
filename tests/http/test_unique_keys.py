"""Unique jobs over HTTP, on every store: a duplicate enqueue answers 200 with the holder
and `Jobs-Duplicate: true`; a requeue over a held key is a 409 naming the holder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from jobs_core import Jobs, MemoryStore, open_store
from jobs_core.ports import JobStore
from jobs_http import create_app
from tests.pg_admin import throwaway_database

from .conftest import AUTH, TOKEN, Client, assert_error, assert_job


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with throwaway_database("jobs_http_unique") as url:
        yield url


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> JobStore:
    if request.param == "memory":
        return MemoryStore()
    if request.param == "sqlite":
        return open_store(f"sqlite:///{tmp_path / 'jobs.db'}")
    url: str = request.getfixturevalue("pg_url")
    return open_store(f"{url}?table=jobs_{tmp_path.name[-12:].replace('-', '_')}")


@pytest.fixture
async def jobs(store: JobStore) -> AsyncIterator[Jobs]:
    jobs = Jobs(store)
    yield jobs
    await jobs.aclose()


@pytest.fixture
def app(jobs: Jobs) -> Litestar:
    return create_app(jobs, token=TOKEN, run_worker=False)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=app) as c:
        c.headers.update(AUTH)
        yield c


async def test_a_duplicate_enqueue_answers_the_holder_with_the_header(client: Client) -> None:
    first = await client.post(
        "/api/jobs/enqueue", json={"topic": "mail", "payload": 1, "unique_key": "welcome:7"}
    )
    assert first.status_code == 200
    assert "jobs-duplicate" not in first.headers
    job = first.json()
    assert_job(job)
    assert job["unique_key"] == "welcome:7"
    again = await client.post(
        "/api/jobs/enqueue", json={"topic": "mail", "payload": 2, "unique_key": "welcome:7"}
    )
    assert again.status_code == 200
    assert again.headers["jobs-duplicate"] == "true"
    assert again.json() == job
    other = await client.post("/api/jobs/enqueue", json={"topic": "sms", "unique_key": "welcome:7"})
    assert "jobs-duplicate" not in other.headers
    plain = await client.post("/api/jobs/enqueue", json={"topic": "mail", "unique_key": None})
    assert plain.json()["unique_key"] is None
    stats = (await client.get("/api/jobs/stats")).json()
    assert stats["pending"] == 3


async def test_a_requeue_over_a_held_key_is_a_conflict(client: Client) -> None:
    """(The app's store lives on the test client's event loop: every call goes through it.)"""
    body = {"topic": "boom", "unique_key": "k"}
    failed = (await client.post("/api/jobs/enqueue", json=body)).json()
    cancelled = await client.post(f"/api/jobs/{failed['id']}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    holder = await client.post("/api/jobs/enqueue", json=body)
    assert "jobs-duplicate" not in holder.headers  # the cancelled job freed the key
    refused = assert_error(await client.post(f"/api/jobs/{failed['id']}/requeue"), 409)
    assert "unique key" in refused["message"]
    assert refused["data"] == {"unique_key": "k", "holder_id": holder.json()["id"]}
    assert (await client.get(f"/api/jobs/{failed['id']}")).json()["status"] == "cancelled"
    await client.post(f"/api/jobs/{holder.json()['id']}/cancel")
    again = await client.post(f"/api/jobs/{failed['id']}/requeue")
    assert again.status_code == 200
    assert (again.json()["status"], again.json()["unique_key"]) == ("pending", "k")


@pytest.mark.parametrize(
    ("key", "problem"), [("", "must not be empty"), ("k" * 256, "the limit is 255"), (5, "string")]
)
async def test_a_bad_unique_key_is_a_400(client: Client, key: object, problem: str) -> None:
    response = await client.post("/api/jobs/enqueue", json={"topic": "mail", "unique_key": key})
    body = assert_error(response, 400)
    assert problem in body["message"]
    assert (await client.get("/api/jobs/stats")).json()["total"] == 0
