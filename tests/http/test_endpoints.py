"""Every endpoint, every documented status code, with the seed's exact JSON shapes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobs_core import Jobs

from .conftest import (
    PAGE_KEYS,
    STATS_KEYS,
    Client,
    MakeJob,
    assert_error,
    assert_job,
)


async def test_enqueue_returns_the_new_pending_job(client: Client) -> None:
    """POST /api/jobs/enqueue answers 200 with the stored job, seed field names."""
    body = {
        "topic": "send_email",
        "payload": {"to": "user@example.com", "subject": "Hello"},
        "run_at": "2025-01-08T12:00:00Z",
        "max_retries": 5,
    }
    response = await client.post("/api/jobs/enqueue", json=body)
    assert response.status_code == 200
    job = response.json()
    assert_job(job)
    assert job["topic"] == "send_email"
    assert job["payload"] == body["payload"]
    assert job["status"] == "pending"
    assert job["run_at"] == "2025-01-08T12:00:00Z"
    assert job["retries"] == 0
    assert job["max_retries"] == 5
    assert job["locked_until"] is None
    assert job["last_error"] is None
    assert job["created"] == job["updated"]
    assert "lock_token" not in response.text


async def test_enqueue_defaults(client: Client) -> None:
    """Without run_at/max_retries/payload: due now, 3 retries, null payload."""
    before = datetime.now(UTC)
    response = await client.post("/api/jobs/enqueue", json={"topic": "ok"})
    job = response.json()
    assert response.status_code == 200
    assert job["max_retries"] == 3
    assert job["payload"] is None
    run_at = datetime.fromisoformat(job["run_at"])
    assert before - timedelta(seconds=1) <= run_at <= datetime.now(UTC) + timedelta(seconds=1)


async def test_enqueue_run_at_with_offset_is_shown_in_utc(client: Client) -> None:
    response = await client.post(
        "/api/jobs/enqueue", json={"topic": "ok", "run_at": "2030-06-01T14:30:00.5+02:00"}
    )
    assert response.json()["run_at"] == "2030-06-01T12:30:00.500000Z"


async def test_enqueue_past_run_at_is_runnable_now(client: Client, jobs: Jobs) -> None:
    response = await client.post(
        "/api/jobs/enqueue", json={"topic": "ok", "run_at": "2000-01-01T00:00:00Z"}
    )
    assert response.status_code == 200
    assert await jobs.run_once() == 1
    got = await client.get(f"/api/jobs/{response.json()['id']}")
    assert got.json()["status"] == "completed"


async def test_get_job(client: Client, make_job: MakeJob) -> None:
    job = await make_job("pending", payload={"a": [1, 2.5, None, True, "x"]})
    response = await client.get(f"/api/jobs/{job['id']}")
    assert response.status_code == 200
    assert response.json() == job
    assert response.json()["payload"] == {"a": [1, 2.5, None, True, "x"]}


async def test_get_missing_job_is_404(client: Client) -> None:
    assert_error(await client.get("/api/jobs/01234567-89ab-cdef-0123-456789abcdef"), 404)


async def test_failed_job_shows_its_last_error(make_job: MakeJob) -> None:
    job = await make_job("failed")
    assert_job(job)
    assert job["last_error"] is not None
    assert "boom <b>" in job["last_error"]
    assert job["retries"] == 0
    assert job["max_retries"] == 0


async def test_a_job_shows_each_failed_attempt_newest_last(
    client: Client, make_job: MakeJob, jobs: Jobs
) -> None:
    """`errors`: attempt, time, error and the handler's traceback, for every attempt;
    a requeue keeps them and the next attempts count from 1 again."""
    job = await make_job("failed", max_retries=1)
    assert [entry["attempt"] for entry in job["errors"]] == [1, 2]
    for entry in job["errors"]:
        assert entry["error"] == job["last_error"]
        assert entry["traceback"].startswith("Traceback (most recent call last):")
        assert "Boom: boom <b>" in entry["traceback"]
    assert job["errors"][0]["at"] <= job["errors"][1]["at"]
    requeued = (await client.post(f"/api/jobs/{job['id']}/requeue")).json()
    assert requeued["errors"] == job["errors"]
    assert requeued["result"] is None
    await jobs.run_once()
    again = (await client.get(f"/api/jobs/{job['id']}")).json()
    assert again["errors"][:2] == job["errors"]
    assert [entry["attempt"] for entry in again["errors"]] == [1, 2, 1]


async def test_a_completed_job_shows_its_result(make_job: MakeJob) -> None:
    job = await make_job("completed", topic="echo", payload=[1, "two", None])
    assert_job(job)
    assert job["result"] == {"echo": [1, "two", None]}
    assert job["errors"] == []
    nothing = await make_job("completed")  # a handler that returns None
    assert nothing["result"] is None


async def test_processing_job_shows_locked_until(make_job: MakeJob) -> None:
    job = await make_job("processing")
    assert_job(job)
    assert job["locked_until"] is not None


async def test_list_shape_and_defaults(client: Client, make_job: MakeJob) -> None:
    """GET /api/jobs: {items, total, limit, offset, payloads, truncated}, newest first, limit 20."""
    made = [await make_job("pending") for _ in range(3)]
    response = await client.get("/api/jobs")
    assert response.status_code == 200
    page = response.json()
    assert set(page) == PAGE_KEYS
    assert page["total"] == 3
    assert page["limit"] == 20
    assert page["offset"] == 0
    for item in page["items"]:
        assert_job(item)
    assert [item["id"] for item in page["items"]] == [job["id"] for job in reversed(made)]


async def test_list_default_limit_is_20(client: Client) -> None:
    for i in range(25):
        assert (
            await client.post("/api/jobs/enqueue", json={"topic": "ok", "payload": i})
        ).is_success
    page = (await client.get("/api/jobs")).json()
    assert len(page["items"]) == 20
    assert page["total"] == 25


async def test_list_filters_and_paging(client: Client, make_job: MakeJob) -> None:
    pending = [await make_job("pending", topic="t.a") for _ in range(3)]
    await make_job("failed")
    page = (await client.get("/api/jobs", params={"topic": "t.a", "limit": 2, "offset": 1})).json()
    assert page["total"] == 3
    assert page["limit"] == 2
    assert page["offset"] == 1
    assert [item["id"] for item in page["items"]] == [pending[1]["id"], pending[0]["id"]]
    failed = (await client.get("/api/jobs", params={"status": "failed"})).json()
    assert failed["total"] == 1
    assert failed["items"][0]["status"] == "failed"
    both = (await client.get("/api/jobs", params={"status": "pending", "topic": "boom"})).json()
    assert both == {
        "items": [],
        "total": 0,
        "limit": 20,
        "offset": 0,
        "payloads": True,
        "truncated": False,
    }


async def test_list_offset_past_the_end_is_empty(client: Client, make_job: MakeJob) -> None:
    await make_job("pending")
    page = (await client.get("/api/jobs", params={"offset": 10**6})).json()
    assert page == {
        "items": [],
        "total": 1,
        "limit": 20,
        "offset": 10**6,
        "payloads": True,
        "truncated": False,
    }


async def test_list_limit_bounds_accepted(client: Client) -> None:
    for limit in (1, 500):
        response = await client.get("/api/jobs", params={"limit": limit})
        assert response.status_code == 200
        assert response.json()["limit"] == limit


async def test_stats(client: Client, make_job: MakeJob) -> None:
    """GET /api/jobs/stats counts per status; success_rate = completed/(completed+failed)."""
    empty = (await client.get("/api/jobs/stats")).json()
    assert empty == {
        "pending": 0,
        "processing": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
        "total": 0,
        "success_rate": 0.0,
    }
    await make_job("completed")
    await make_job("completed")
    await make_job("completed")
    await make_job("failed")
    await make_job("processing")
    await make_job("pending", topic="later", run_at="2100-01-01T00:00:00Z")
    response = await client.get("/api/jobs/stats")
    assert response.status_code == 200
    stats = response.json()
    assert set(stats) == STATS_KEYS
    assert stats == {
        "pending": 1,
        "processing": 1,
        "completed": 3,
        "failed": 1,
        "cancelled": 0,
        "total": 6,
        "success_rate": 0.75,
    }


async def test_requeue_failed_job(client: Client, make_job: MakeJob) -> None:
    """POST /{id}/requeue on a failed job: 200, pending, retries 0, lock cleared."""
    job = await make_job("failed", max_retries=1)
    assert job["retries"] == 1
    response = await client.post(f"/api/jobs/{job['id']}/requeue")
    assert response.status_code == 200
    after = response.json()
    assert_job(after)
    assert after["status"] == "pending"
    assert after["retries"] == 0
    assert after["locked_until"] is None
    assert after["id"] == job["id"]
    assert (await client.get(f"/api/jobs/{job['id']}")).json() == after


@pytest.mark.parametrize("status", ["pending", "processing", "completed"])
async def test_requeue_not_failed_is_409(client: Client, make_job: MakeJob, status: str) -> None:
    job = await make_job(status)
    body = assert_error(await client.post(f"/api/jobs/{job['id']}/requeue"), 409)
    assert status in body["message"]
    assert (await client.get(f"/api/jobs/{job['id']}")).json() == job


async def test_requeue_missing_is_404(client: Client) -> None:
    assert_error(await client.post("/api/jobs/nope/requeue"), 404)


@pytest.mark.parametrize("status", ["pending", "failed"])
async def test_delete(client: Client, make_job: MakeJob, status: str) -> None:
    """DELETE on pending/failed: 204 with an empty body; then 404; twice: 404."""
    job = await make_job(status)
    response = await client.delete(f"/api/jobs/{job['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert_error(await client.get(f"/api/jobs/{job['id']}"), 404)
    assert_error(await client.delete(f"/api/jobs/{job['id']}"), 404)


@pytest.mark.parametrize("status", ["processing", "completed"])
async def test_delete_processing_or_completed_is_409(
    client: Client, make_job: MakeJob, status: str
) -> None:
    job = await make_job(status)
    assert_error(await client.delete(f"/api/jobs/{job['id']}"), 409)
    assert (await client.get(f"/api/jobs/{job['id']}")).json() == job


async def test_delete_missing_is_404(client: Client) -> None:
    assert_error(await client.delete("/api/jobs/nope"), 404)


async def test_wrong_method_is_405_json(client: Client, make_job: MakeJob) -> None:
    job = await make_job("pending")
    response = await client.put(f"/api/jobs/{job['id']}", json={})
    assert_error(response, 405)
    assert "DELETE" in response.headers["allow"]
    assert_error(await client.get("/api/jobs/enqueue"), 405)


async def test_unknown_api_path_is_404_json(client: Client) -> None:
    assert_error(await client.get("/api/nothing-here"), 404)
    assert_error(await client.get("/api/jobs/a/b/c"), 404)


async def test_every_api_response_is_no_store(client: Client, make_job: MakeJob) -> None:
    """The JSON API sets Cache-Control: no-store, on successes and errors alike."""
    job = await make_job("pending")
    responses = [
        await client.get("/api/jobs"),
        await client.get("/api/jobs/stats"),
        await client.get(f"/api/jobs/{job['id']}"),
        await client.get("/api/jobs/missing"),
        await client.post(f"/api/jobs/{job['id']}/requeue"),
        await client.post("/api/jobs/enqueue", json={"topic": "ok"}),
        await client.post("/api/jobs/enqueue", json={"topic": ""}),
        await client.delete(f"/api/jobs/{job['id']}"),
        await client.get("/api/jobs", headers={"Authorization": "Bearer wrong"}),
    ]
    for response in responses:
        assert "no-store" in response.headers.get("cache-control", ""), response.request.url


async def test_root_redirects_to_the_ui(anon: Client) -> None:
    response = await anon.get("/", follow_redirects=False)
    assert response.status_code in {301, 302, 303, 307, 308}
    assert response.headers["location"] == "/_/"


async def test_requeue_and_delete_that_lose_every_write_are_409(
    client: Client, jobs: Jobs, make_job: MakeJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`JobBusy` (the job changed under every guarded write) is a conflict, not 404/500."""
    job = await make_job("failed")

    async def lose_update(updates: Any) -> list[bool]:
        return [False] * len(updates)

    async def lose_delete(job_id: str, *, expected_status: Any) -> bool:
        return False

    monkeypatch.setattr(jobs.store, "update", lose_update)
    monkeypatch.setattr(jobs.store, "delete", lose_delete)
    body = assert_error(await client.post(f"/api/jobs/{job['id']}/requeue"), 409)
    assert "retry later" in body["message"]
    assert_error(await client.delete(f"/api/jobs/{job['id']}"), 409)
    assert (await client.get(f"/api/jobs/{job['id']}")).json() == job
