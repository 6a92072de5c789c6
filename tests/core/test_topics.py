"""Paused topics, global limits and per-worker concurrency through `Jobs` and its worker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from jobs_core import (
    InvalidOptions,
    InvalidTopic,
    Job,
    Jobs,
    JobsConfig,
    JobStatus,
    MemoryStore,
    TopicInfo,
)
from jobs_core.testing import FakeClock
from tests.core.conftest import until


async def test_pause_holds_a_topic_and_resume_releases_it(jobs: Jobs) -> None:
    ran: list[object] = []
    jobs.register("t", lambda job: ran.append(job.payload))
    jobs.register("u", lambda job: ran.append(job.payload))
    await jobs.pause("t")
    await jobs.enqueue("t", 1)  # enqueueing a paused topic still works
    await jobs.enqueue("u", 2)
    assert await jobs.run_once() == 1
    assert ran == [2]
    (t, u) = await jobs.list_topics()
    assert (t.topic, t.paused, t.counts[JobStatus.PENDING]) == ("t", True, 1)
    assert (u.topic, u.paused, u.counts[JobStatus.COMPLETED]) == ("u", False, 1)
    await jobs.resume("t")
    assert await jobs.run_once() == 1
    assert ran == [2, 1]


async def test_set_limit_validates_and_reports(jobs: Jobs) -> None:
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(InvalidOptions, match="max_running"):
            await jobs.set_limit("t", max_running=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidTopic):
        await jobs.pause("")
    await jobs.set_limit("t", max_running=3)
    assert await jobs.list_topics() == [
        TopicInfo(topic="t", counts=dict.fromkeys(JobStatus, 0), max_running=3)
    ]
    await jobs.set_limit("t", max_running=None)
    assert await jobs.list_topics() == []


async def test_a_limit_of_zero_holds_the_topic(jobs: Jobs) -> None:
    jobs.register("t", lambda job: None)
    await jobs.set_limit("t", max_running=0)
    await jobs.enqueue("t", 1)
    assert await jobs.run_once() == 0
    await jobs.set_limit("t", max_running=1)
    assert await jobs.run_once() == 1


@pytest.mark.parametrize("bad", [0, -2, 1.0, True, "3"])
def test_concurrency_must_be_a_positive_int(jobs: Jobs, bad: object) -> None:
    with pytest.raises(InvalidOptions, match="concurrency must be a positive integer"):
        jobs.register("t", lambda job: None, concurrency=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidOptions, match="concurrency"):
        jobs.handler("u", concurrency=bad)(lambda job: None)  # type: ignore[arg-type]
    assert jobs.topics == frozenset()


async def test_a_worker_runs_at_most_concurrency_jobs_of_a_topic(clock: FakeClock) -> None:
    """With `concurrency=2` and a pool of 8, two jobs of the topic run at a time while
    jobs of an unlimited topic fill the other slots."""
    store = MemoryStore()
    jobs = Jobs(store, clock=clock, config=JobsConfig(worker_pool_size=8))
    release = asyncio.Event()
    running: dict[str, int] = {"slow": 0, "free": 0}
    most = {"slow": 0, "free": 0}
    finished = 0

    async def handler(job: Job) -> None:
        running[job.topic] += 1
        most[job.topic] = max(most[job.topic], running[job.topic])
        await release.wait()
        running[job.topic] -= 1
        nonlocal finished
        finished += 1

    @jobs.handler("slow", concurrency=2)
    async def slow(job: Job) -> None:
        await handler(job)

    jobs.register("free", handler)
    await jobs.enqueue_many("slow", range(5))
    await jobs.enqueue_many("free", range(4))
    await jobs.start()
    try:
        await until(lambda: running == {"slow": 2, "free": 4})
        for _ in range(50):
            await asyncio.sleep(0)
        assert running == {"slow": 2, "free": 4}
        release.set()
        await until(lambda: finished == 9)
    finally:
        await jobs.stop()
    assert (await jobs.stats()).completed == 9
    assert most == {"slow": 2, "free": 4}


def test_the_readme_topics_snippet_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    readme = Path(__file__).resolve().parents[2] / "packages" / "jobs-core" / "README.md"
    section = readme.read_text().split("## Topics: pause and limits", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    assert capsys.readouterr().out.startswith("resize False 4 {")
