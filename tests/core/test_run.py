"""`Jobs.run()` works until SIGTERM/SIGINT, then stops gracefully; `start(topics=)`
claims only the topics named."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

from jobs_core import InvalidOptions, Job, Jobs, JobStatus
from tests.core.conftest import settle, until


async def test_start_with_topics_claims_only_those(jobs: Jobs) -> None:
    ran: list[str] = []

    async def handler(job: Job) -> None:
        ran.append(job.topic)

    for topic in ("a", "b", "c"):
        jobs.register(topic, handler)
    queued = {topic: await jobs.enqueue(topic, None) for topic in ("a", "b", "c")}
    await jobs.start(topics=["a", "c"])
    try:
        await until(lambda: len(ran) == 2)
        await settle()
    finally:
        await jobs.stop()
    assert sorted(ran) == ["a", "c"]
    assert (await jobs.get(queued["b"].id)).status is JobStatus.PENDING
    assert await jobs.run_once() == 1  # once stopped, the restriction is gone
    assert sorted(ran) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("topics", "message"),
    [
        (["a", "nope"], "no handler is registered for topics ['nope']"),
        ([], "at least one"),
        ("a", "collection of topics"),
    ],
)
async def test_start_refuses_topics_without_a_handler(
    jobs: Jobs, topics: list[str] | str, message: str
) -> None:
    jobs.register("a", lambda job: None)
    with pytest.raises(InvalidOptions, match=message.replace("[", r"\[").replace("]", r"\]")):
        await jobs.start(topics=topics)
    assert not jobs.running
    assert not any(service.running for service in jobs.services)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_run_stops_gracefully_at_a_signal(jobs: Jobs, sig: signal.Signals) -> None:
    """The signal stops claiming; the running job is waited for (it completes), and the
    handlers in place before `run()` are back once it returns."""
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(job: Job) -> None:
        started.set()
        await release.wait()

    jobs.register("slow", slow)
    job = await jobs.enqueue("slow", None)
    later = await jobs.enqueue_at("slow", None, job.run_at.replace(year=2100))
    running = asyncio.create_task(jobs.run())
    await started.wait()
    os.kill(os.getpid(), sig)
    await until(lambda: not jobs.running)  # claiming stopped; the job still runs
    assert not running.done()
    os.kill(os.getpid(), sig)  # a second signal changes nothing
    await settle()
    release.set()
    await asyncio.wait_for(running, timeout=10)
    assert not jobs.running
    assert (await jobs.get(job.id)).status is JobStatus.COMPLETED
    assert (await jobs.get(later.id)).status is JobStatus.PENDING
    assert {s: signal.getsignal(s) for s in before} == before


async def test_run_with_topics_claims_only_those(jobs: Jobs) -> None:
    ran: list[str] = []

    async def handler(job: Job) -> None:
        ran.append(job.topic)

    jobs.register("a", handler)
    jobs.register("b", handler)
    other = await jobs.enqueue("b", None)
    await jobs.enqueue("a", None)
    running = asyncio.create_task(jobs.run(topics=["a"]))
    await until(lambda: ran == ["a"])
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(running, timeout=10)
    assert (await jobs.get(other.id)).status is JobStatus.PENDING


def test_run_outside_the_main_thread_says_so(jobs: Jobs) -> None:
    errors: list[BaseException] = []

    def go() -> None:
        try:
            asyncio.run(jobs.run())
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=go)
    thread.start()
    thread.join(timeout=10)
    assert len(errors) == 1
    assert "main thread" in str(errors[0])
    assert not jobs.running
