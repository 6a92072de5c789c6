"""`POST /api/jobs/{id}/cancel`, and the `cancelled` status in stats and the list filter.

A pending job is cancelled at once; a processing one keeps running with
`cancel_requested` set (its worker stops it at its next lease renewal, which the core's
tests cover); a final job is a 409 like requeue's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from jobs_core import Jobs

from .conftest import STATS_KEYS, Client, MakeJob, assert_error, assert_job


async def test_a_pending_job_is_cancelled_at_once(client: Client, make_job: MakeJob) -> None:
    job = await make_job("pending", run_at="2030-01-01T00:00:00Z")
    response = await client.post(f"/api/jobs/{job['id']}/cancel")
    assert response.status_code == 200
    after = response.json()
    assert_job(after)
    assert after["status"] == "cancelled"
    assert after["actions"] == ["requeue", "delete"]
    assert after["cancel_requested"] is None  # nothing to ask: it never ran
    assert after["locked_until"] is None
    unchanged = {"id", "topic", "payload", "run_at", "retries", "max_retries", "created"}
    assert {key: after[key] for key in unchanged} == {key: job[key] for key in unchanged}
    assert (await client.get(f"/api/jobs/{job['id']}")).json() == after


async def test_a_processing_job_gets_a_cancel_request(client: Client, make_job: MakeJob) -> None:
    """It stays processing, lease untouched, with `cancel_requested`; asking again keeps
    the first request's time."""
    job = await make_job("processing")
    assert job["cancel_requested"] is None
    response = await client.post(f"/api/jobs/{job['id']}/cancel")
    assert response.status_code == 200
    after = response.json()
    assert_job(after)
    assert after["status"] == "processing"
    assert after["actions"] == ["cancel"]
    assert after["locked_until"] == job["locked_until"]  # the worker keeps its lease
    assert after["cancel_requested"] is not None
    asked = datetime.fromisoformat(after["cancel_requested"])
    assert datetime.fromisoformat(job["created"]) <= asked
    assert (await client.get(f"/api/jobs/{job['id']}")).json() == after

    again = await client.post(f"/api/jobs/{job['id']}/cancel")
    assert again.status_code == 200
    assert again.json()["status"] == "processing"
    assert again.json()["cancel_requested"] == after["cancel_requested"]


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
async def test_a_final_job_is_409(client: Client, make_job: MakeJob, status: str) -> None:
    job = await make_job(status)
    body = assert_error(await client.post(f"/api/jobs/{job['id']}/cancel"), 409)
    assert status in body["message"]
    assert "cancel" in body["message"]
    assert body["data"] == {}
    assert (await client.get(f"/api/jobs/{job['id']}")).json() == job


async def test_the_409_has_the_shape_of_requeues(client: Client, make_job: MakeJob) -> None:
    job = await make_job("completed")
    cancel = await client.post(f"/api/jobs/{job['id']}/cancel")
    requeue = await client.post(f"/api/jobs/{job['id']}/requeue")
    for response in (cancel, requeue):
        assert_error(response, 409)
    assert set(cancel.json()) == set(requeue.json())
    assert cancel.json()["data"] == requeue.json()["data"] == {}
    assert cancel.headers["cache-control"] == requeue.headers["cache-control"]


async def test_an_unknown_job_is_404(client: Client) -> None:
    assert_error(await client.post("/api/jobs/01234567-89ab-cdef-0123-456789abcdef/cancel"), 404)


async def test_without_the_token_it_is_401_and_changes_nothing(
    anon: Client, client: Client, make_job: MakeJob
) -> None:
    job = await make_job("pending")
    response = await anon.post(f"/api/jobs/{job['id']}/cancel")
    assert_error(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    wrong = await anon.post(
        f"/api/jobs/{job['id']}/cancel", headers={"Authorization": "Bearer wrong-token"}
    )
    assert_error(wrong, 401)
    assert (await client.get(f"/api/jobs/{job['id']}")).json() == job


async def test_a_cancel_that_loses_every_write_is_409(
    client: Client, jobs: Jobs, make_job: MakeJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`JobBusy` (the job changed under every guarded write) is a conflict, not 404/500."""
    job = await make_job("pending")

    async def lose_update(updates: Any) -> list[bool]:
        return [False] * len(updates)

    monkeypatch.setattr(jobs.store, "update", lose_update)
    body = assert_error(await client.post(f"/api/jobs/{job['id']}/cancel"), 409)
    assert "retry later" in body["message"]
    assert (await client.get(f"/api/jobs/{job['id']}")).json() == job


async def test_a_cancelled_job_can_be_requeued_or_deleted(
    client: Client, make_job: MakeJob
) -> None:
    again = await make_job("cancelled")
    requeued = await client.post(f"/api/jobs/{again['id']}/requeue")
    assert requeued.status_code == 200
    assert requeued.json()["status"] == "pending"
    assert requeued.json()["cancel_requested"] is None
    gone = await make_job("cancelled")
    assert (await client.delete(f"/api/jobs/{gone['id']}")).status_code == 204
    assert_error(await client.get(f"/api/jobs/{gone['id']}"), 404)


async def test_stats_count_cancelled_jobs(client: Client, make_job: MakeJob) -> None:
    """`cancelled` is counted beside the seed's keys; the success rate ignores it."""
    await make_job("completed")
    await make_job("failed")
    await make_job("cancelled")
    await make_job("cancelled")
    stats = (await client.get("/api/jobs/stats")).json()
    assert set(stats) == STATS_KEYS
    assert stats == {
        "pending": 0,
        "processing": 0,
        "completed": 1,
        "failed": 1,
        "cancelled": 2,
        "total": 4,
        "success_rate": 0.5,
    }


async def test_the_list_filters_on_cancelled(client: Client, make_job: MakeJob) -> None:
    cancelled = [await make_job("cancelled") for _ in range(2)]
    await make_job("pending")
    await make_job("failed")
    response = await client.get("/api/jobs", params={"status": "cancelled"})
    assert response.status_code == 200
    page = response.json()
    assert page["total"] == 2
    assert [item["id"] for item in page["items"]] == [job["id"] for job in reversed(cancelled)]
    assert all(item["status"] == "cancelled" for item in page["items"])
