"""`POST /api/jobs/bulk/{requeue,delete,cancel}`: ids or a filter, `max`, `dry_run`;
`{matched, changed, skipped}`; auth and bad input like the other write routes."""

from __future__ import annotations

from typing import Any

import pytest

from jobs_core import Jobs, JobStatus

from .conftest import Client, MakeJob, assert_error


async def test_requeue_every_failed_job_of_a_topic(
    client: Client, jobs: Jobs, make_job: MakeJob
) -> None:
    failed = [await make_job("failed") for _ in range(3)]
    await make_job("pending")
    response = await client.post(
        "/api/jobs/bulk/requeue", json={"topic": "boom", "status": "failed"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"matched": 3, "changed": 3, "skipped": 0}
    assert {(await jobs.get(job["id"])).status for job in failed} == {JobStatus.PENDING}


async def test_ids_the_action_is_not_legal_for_are_skipped(
    client: Client, jobs: Jobs, make_job: MakeJob
) -> None:
    completed = await make_job("completed")
    pending = await make_job("pending", topic="unhandled")
    response = await client.post(
        "/api/jobs/bulk/delete", json={"ids": [pending["id"], completed["id"]]}
    )
    assert response.json() == {"matched": 2, "changed": 1, "skipped": 1}
    assert (await jobs.get(completed["id"])).status is JobStatus.COMPLETED


async def test_a_dry_run_counts_what_a_confirmation_shows(
    client: Client, jobs: Jobs, make_job: MakeJob
) -> None:
    for _ in range(2):
        await make_job("pending")
    body: dict[str, Any] = {"status": "pending", "dry_run": True}
    response = await client.post("/api/jobs/bulk/cancel", json=body)
    assert response.json() == {"matched": 2, "changed": 0, "skipped": 0}
    assert (await jobs.stats()).pending == 2
    done = await client.post("/api/jobs/bulk/cancel", json={"status": "pending", "max": 1})
    assert done.json() == {"matched": 1, "changed": 1, "skipped": 0}
    assert (await jobs.stats()).cancelled == 1


async def test_before_selects_jobs_last_changed_earlier(
    client: Client, jobs: Jobs, make_job: MakeJob
) -> None:
    await make_job("failed")
    far_past = "2000-01-01T00:00:00Z"
    response = await client.post(
        "/api/jobs/bulk/delete", json={"status": "failed", "before": far_past}
    )
    assert response.json() == {"matched": 0, "changed": 0, "skipped": 0}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, None),
        ({"ids": ["a"], "topic": "t"}, None),
        ({"ids": "a"}, "ids"),
        ({"topic": 5}, "topic"),
        ({"status": "done"}, None),
        ({"before": "yesterday"}, "before"),
        ({"status": "failed", "max": 0}, None),
        ({"status": "failed", "max": "10"}, "max"),
        ({"status": "failed", "dry_run": "yes"}, "dry_run"),
        ({"status": "failed", "where": "1=1"}, "where"),
        ([], None),
    ],
)
async def test_a_bad_body_is_a_400_and_changes_nothing(
    client: Client, jobs: Jobs, make_job: MakeJob, body: Any, field: str | None
) -> None:
    await make_job("failed")
    response = await client.post("/api/jobs/bulk/requeue", json=body)
    error = assert_error(response, 400)
    if field is not None:
        assert field in error["data"]
    assert (await jobs.stats()).failed == 1


async def test_bulk_needs_the_token_and_json(anon: Client, client: Client) -> None:
    assert_error(await anon.post("/api/jobs/bulk/requeue", json={"status": "failed"}), 401)
    response = await client.post(
        "/api/jobs/bulk/requeue",
        content=b'{"status": "failed"}',
        headers={"content-type": "text/plain"},
    )
    assert_error(response, 415)


async def test_bulk_routes_do_not_shadow_a_job_id(client: Client, make_job: MakeJob) -> None:
    """`/api/jobs/bulk/requeue` is the bulk route; `/api/jobs/{id}/requeue` still works."""
    job = await make_job("failed")
    response = await client.post(f"/api/jobs/{job['id']}/requeue")
    assert (response.status_code, response.json()["status"]) == (200, "pending")
