"""Unique jobs through the `Jobs` service: `submit`, `enqueue_many`'s flags, requeue."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs_core import (
    MAX_UNIQUE_KEY_LENGTH,
    CannotRequeue,
    Enqueued,
    EnqueuedJobs,
    EnqueueOptions,
    InvalidOptions,
    Jobs,
    JobStatus,
    MemoryStore,
    UniqueKeyTaken,
)
from jobs_core.testing import FakeClock


def _key(key: str) -> EnqueueOptions:
    return EnqueueOptions(unique_key=key)


async def test_a_duplicate_enqueue_returns_the_active_job(jobs: Jobs) -> None:
    """`enqueue_with_options` answers the holder; `submit` says it is not new."""
    first = await jobs.enqueue_with_options("t", {"n": 1}, _key("k"))
    assert first.unique_key == "k"
    assert await jobs.enqueue_with_options("t", {"n": 2}, _key("k")) == first
    assert await jobs.submit("t", {"n": 3}, _key("k")) == Enqueued(first, False)
    other = await jobs.submit("u", {"n": 3}, _key("k"))
    assert other.new
    assert other.job.topic == "u"
    plain = await jobs.submit("t", 1)
    assert plain.new
    assert plain.job.unique_key is None
    assert (await jobs.stats()).pending == 3


async def test_enqueue_many_flags_each_job(jobs: Jobs) -> None:
    """The first job of a keyed batch is new and the rest resolve to it; a later batch
    resolves wholly to the holder. Without a key every job is new."""
    batch = await jobs.enqueue_many("t", [1, 2, 3], _key("k"))
    assert isinstance(batch, EnqueuedJobs)
    assert isinstance(batch, list)
    assert batch.new == (True, False, False)
    assert [j.id for j in batch] == [batch[0].id] * 3
    assert batch[0].payload == 1
    assert batch.added == [batch[0]]
    again = await jobs.enqueue_many("t", [4], _key("k"))
    assert (list(again), again.new) == ([batch[0]], (False,))
    plain = await jobs.enqueue_many("t", [5, 6])
    assert plain.new == (True, True)
    assert (await jobs.enqueue_many("t", [], _key("k"))) == []


async def test_a_finished_job_frees_the_key_and_requeue_checks_it(
    store: MemoryStore, clock: FakeClock
) -> None:
    """Once the holder failed, a new job takes the key; requeueing the failed one then
    raises `UniqueKeyTaken` (a `CannotRequeue`), and works again once the key is free."""
    jobs = Jobs(store, clock=clock)

    def boom(job: object) -> None:
        raise RuntimeError("boom")

    jobs.register("t", boom)
    first = await jobs.enqueue_with_options("t", 1, EnqueueOptions(unique_key="k", max_retries=0))
    await jobs.run_once()
    assert (await jobs.get(first.id)).status is JobStatus.FAILED
    second = await jobs.submit("t", 2, _key("k"))
    assert second.new
    with pytest.raises(UniqueKeyTaken) as caught:
        await jobs.requeue(first.id)
    assert isinstance(caught.value, CannotRequeue)
    assert (caught.value.holder_id, caught.value.unique_key) == (second.job.id, "k")
    assert second.job.id in str(caught.value)
    assert (await jobs.get(first.id)).status is JobStatus.FAILED
    await jobs.cancel(second.job.id)
    again = await jobs.requeue(first.id)
    assert (again.status, again.unique_key) == (JobStatus.PENDING, "k")


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("", "must not be empty"),
        ("x" * (MAX_UNIQUE_KEY_LENGTH + 1), "the limit is 255"),
        (7, "must be a string"),
        ("a\x00b", "NUL"),
        ("\udc80", "surrogates"),
    ],
)
async def test_a_bad_unique_key_is_refused(jobs: Jobs, key: object, problem: str) -> None:
    with pytest.raises(InvalidOptions, match=problem):
        await jobs.submit("t", 1, EnqueueOptions(unique_key=key))  # type: ignore[arg-type]
    assert (await jobs.stats()).total == 0


async def test_a_key_of_the_longest_length_is_kept(jobs: Jobs) -> None:
    key = "é" * MAX_UNIQUE_KEY_LENGTH
    assert (await jobs.enqueue_with_options("t", 1, _key(key))).unique_key == key


def test_the_readme_unique_jobs_snippet_runs_as_written() -> None:
    readme = Path(__file__).resolve().parents[2] / "packages" / "jobs-core" / "README.md"
    section = readme.read_text().split("## Unique jobs", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
