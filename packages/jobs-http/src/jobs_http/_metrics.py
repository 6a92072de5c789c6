"""Prometheus metrics of a `Jobs`: what its worker did, and what its store holds now.

`JobsMetrics` is an observer (give it to `Jobs(observers=[...])`): the worker's events
feed its counters and histograms as they happen, at the cost of a dictionary lookup and
an add. The gauges (jobs per topic and status, the oldest due job's age) are read from
the store when `/metrics` is scraped, in the one grouped scan `list_topics()` does, so
they are right for every process sharing the store, not only this one. Each
`JobsMetrics` has its own registry unless given one, so two of them never collide.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Final

from litestar import Response, get
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency, Provide
from litestar.router import Router
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from jobs_core import BaseObserver, Job, Jobs, JobStatus, Outcome
from jobs_http._auth import Authenticate, superuser_guard

#: Where the text exposition is served.
METRICS_PATH: Final = "/metrics"
#: Seconds: from a millisecond job to one of an hour.
RUN_BUCKETS: Final = (0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0)
#: Seconds a due job waited to start: from an idle worker's wake-up to a long backlog.
WAIT_BUCKETS: Final = (0.01, 0.05, 0.25, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0, 21600.0)
#: `jobs_finished_total`'s outcome of a lease that ran out (the rescuer's retry or failure).
EXPIRED: Final = "expired"


class JobsMetrics(BaseObserver):
    """The metrics, on `registry` (a fresh `CollectorRegistry` by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.enqueued_total = Counter(
            "jobs_enqueued", "Jobs stored by enqueue.", ["topic"], registry=r
        )
        self.finished_total = Counter(
            "jobs_finished",
            "Runs whose outcome was written: completed, failed, retried, cancelled, snoozed,"
            " released (handed back by a stopping worker) or expired (lease ran out).",
            ["topic", "outcome"],
            registry=r,
        )
        self.run_seconds = Histogram(
            "jobs_run_seconds", "Handler run time.", ["topic"], buckets=RUN_BUCKETS, registry=r
        )
        self.wait_seconds = Histogram(
            "jobs_wait_seconds",
            "From a job's due time (run_at) to its claim by a worker.",
            ["topic"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.refused_total = Counter(
            "jobs_fencing_refused",
            "Results refused because their lease was lost (fencing).",
            registry=r,
        )
        self.store_errors_total = Counter(
            "jobs_store_errors", "Failed store calls, by operation.", ["operation"], registry=r
        )
        self.jobs_by_status = Gauge(
            "jobs", "Jobs in the store, by topic and status.", ["topic", "status"], registry=r
        )
        self.oldest_due_age = Gauge(
            "jobs_oldest_due_age_seconds",
            "How long the topic's oldest due pending job has waited (0: none due).",
            ["topic"],
            registry=r,
        )

    def enqueued(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self.enqueued_total.labels(job.topic).inc()

    def claimed(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            waited = (job.updated - job.run_at).total_seconds()
            self.wait_seconds.labels(job.topic).observe(max(waited, 0.0))

    def finished(self, job: Job, outcome: Outcome, duration: timedelta, error: str | None) -> None:
        self.finished_total.labels(job.topic, outcome.value).inc()
        self.run_seconds.labels(job.topic).observe(max(duration.total_seconds(), 0.0))

    def refused(self, job: Job, event: str) -> None:
        self.refused_total.inc()

    def rescued(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self.finished_total.labels(job.topic, EXPIRED).inc()

    def store_error(self, operation: str, error: BaseException, retry_in: timedelta | None) -> None:
        self.store_errors_total.labels(operation).inc()

    async def refresh(self, jobs: Jobs) -> None:
        """Read the gauges from `jobs`' store (every topic with jobs or a policy)."""
        infos = await jobs.list_topics()
        now = jobs.clock.now()
        self.jobs_by_status.clear()
        self.oldest_due_age.clear()
        for info in infos:
            for status in JobStatus:
                self.jobs_by_status.labels(info.topic, status.value).set(info.counts.get(status, 0))
            self.oldest_due_age.labels(info.topic).set(info.due_lag(now).total_seconds())

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


@get(METRICS_PATH, summary="Prometheus metrics", include_in_schema=False)
async def metrics_text(
    jobs: NamedDependency[Jobs], metrics: NamedDependency[JobsMetrics]
) -> Response[bytes]:
    """The metrics in Prometheus' text format, the gauges read from the store now."""
    await metrics.refresh(jobs)
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def metrics_router(jobs: Jobs, metrics: JobsMetrics, authenticate: Authenticate) -> Router:
    """`/metrics`, guarded by `authenticate`, never cached."""

    def provide_jobs() -> Jobs:
        return jobs

    def provide_metrics() -> JobsMetrics:
        return metrics

    return Router(
        path="/",
        route_handlers=[metrics_text],
        guards=[superuser_guard(authenticate)],
        dependencies={
            "jobs": Provide(provide_jobs, sync_to_thread=False),
            "metrics": Provide(provide_metrics, sync_to_thread=False),
        },
        cache_control=CacheControlHeader(no_store=True),
    )
