"""`GET /metrics`: the worker's events as counters and histograms, the store's jobs as
gauges, in Prometheus' text format (read back by prometheus_client's own parser)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from jobs_core import EnqueueOptions, Job, Jobs, JobsConfig, MemoryStore
from jobs_core.testing import FakeClock
from jobs_http import JobsMetrics, create_app

from .conftest import TOKEN, Client

T0 = datetime(2030, 1, 1, tzinfo=UTC)

SCRAPER = "scraper-token-41d9"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def metrics() -> JobsMetrics:
    return JobsMetrics()


@pytest.fixture
def jobs(clock: FakeClock, metrics: JobsMetrics) -> Jobs:
    jobs = Jobs(
        MemoryStore(),
        clock=clock,
        config=JobsConfig(backoff=lambda n: timedelta(0)),
        observers=[metrics],
    )

    async def ok(job: Job) -> None:
        clock.advance(timedelta(seconds=2))

    async def boom(job: Job) -> None:
        raise RuntimeError("boom")

    jobs.register("ok", ok)
    jobs.register("boom", boom)
    return jobs


@pytest.fixture
async def client(jobs: Jobs, metrics: JobsMetrics) -> AsyncIterator[Client]:
    app = create_app(jobs, token=TOKEN, run_worker=False, metrics=metrics, metrics_token=SCRAPER)
    async with AsyncTestClient(app=app) as c:
        yield c


async def scrape(client: Client, token: str = SCRAPER) -> dict[tuple[str, tuple[Any, ...]], float]:
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["cache-control"] == "no-store"
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


async def test_runs_are_counted_by_topic_and_outcome_with_their_times(
    client: Client, jobs: Jobs, clock: FakeClock
) -> None:
    await jobs.enqueue("ok", None)
    await jobs.enqueue_with_options("boom", None, EnqueueOptions(max_retries=1))
    clock.advance(timedelta(seconds=3))  # both were due 3 s before they were claimed
    while await jobs.run_once():
        pass
    got = await scrape(client)
    assert got["jobs_enqueued_total", (("topic", "ok"),)] == 1
    assert got["jobs_finished_total", (("outcome", "completed"), ("topic", "ok"))] == 1
    assert got["jobs_finished_total", (("outcome", "retried"), ("topic", "boom"))] == 1
    assert got["jobs_finished_total", (("outcome", "failed"), ("topic", "boom"))] == 1
    assert got["jobs_run_seconds_sum", (("topic", "ok"),)] == 2.0
    assert got["jobs_run_seconds_count", (("topic", "boom"),)] == 2
    assert got["jobs_wait_seconds_bucket", (("le", "5.0"), ("topic", "ok"))] == 1
    assert got["jobs_wait_seconds_bucket", (("le", "1.0"), ("topic", "ok"))] == 0


async def test_gauges_are_read_from_the_store_at_each_scrape(
    client: Client, jobs: Jobs, clock: FakeClock
) -> None:
    await jobs.enqueue("idle", None)  # no handler: it waits
    await jobs.enqueue_at("idle", None, T0 + timedelta(hours=1))
    clock.advance(timedelta(seconds=90))
    got = await scrape(client)
    assert got["jobs", (("status", "pending"), ("topic", "idle"))] == 2
    assert got["jobs", (("status", "failed"), ("topic", "idle"))] == 0
    assert got["jobs_oldest_due_age_seconds", (("topic", "idle"),)] == 90
    await jobs.bulk_delete(topic="idle")
    again = await scrape(client)
    assert ("jobs_oldest_due_age_seconds", (("topic", "idle"),)) not in again


async def test_expired_leases_refusals_and_store_errors_are_counted(
    metrics: JobsMetrics, client: Client, jobs: Jobs
) -> None:
    job = await jobs.enqueue("ok", None)
    metrics.rescued([job])
    metrics.refused(job, "completed")
    metrics.store_error("claim", OSError("down"), timedelta(seconds=1))
    got = await scrape(client)
    assert got["jobs_finished_total", (("outcome", "expired"), ("topic", "ok"))] == 1
    assert got["jobs_fencing_refused_total", ()] == 1
    assert got["jobs_store_errors_total", (("operation", "claim"),)] == 1


async def test_the_superuser_token_reads_metrics_and_the_scraper_s_reads_nothing_else(
    client: Client,
) -> None:
    assert (await client.get("/metrics")).status_code == 401
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    await scrape(client, TOKEN)
    scraper = {"Authorization": f"Bearer {SCRAPER}"}
    assert (await client.get("/api/jobs/stats", headers=scraper)).status_code == 401


async def test_without_metrics_there_is_no_metrics_route(jobs: Jobs) -> None:
    app = create_app(jobs, token=TOKEN, run_worker=False)
    async with AsyncTestClient(app=app) as c:
        response = await c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404
    with pytest.raises(TypeError, match=r"metrics_token=\) needs metrics="):
        create_app(jobs, token=TOKEN, metrics_token=SCRAPER)
