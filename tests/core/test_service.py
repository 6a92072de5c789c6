"""The `Jobs` service over `MemoryStore`: enqueue, inspect, manage."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

from jobs_core import (
    CannotDelete,
    CannotRequeue,
    EnqueueOptions,
    InvalidOptions,
    InvalidPayload,
    Job,
    JobNotFound,
    Jobs,
    JobsConfig,
    JobStats,
    JobStatus,
    MemoryStore,
)
from jobs_core.testing import FakeClock
from tests.core.conftest import T0


async def test_enqueue_stores_a_pending_job_with_defaults(jobs: Jobs) -> None:
    """Defaults: due now, 3 retries, no lock, no error; `get` returns the same job."""
    job = await jobs.enqueue("send_email", {"to": "a@example.com"})
    assert (job.status, job.run_at, job.max_retries, job.retries) == (JobStatus.PENDING, T0, 3, 0)
    assert (job.locked_until, job.lock_token, job.last_error) == (None, None, None)
    assert job.created == job.updated == T0
    assert await jobs.get(job.id) == job


async def test_enqueue_at_and_with_options(jobs: Jobs) -> None:
    """`run_at` and `max_retries` are taken from the call."""
    later = T0 + timedelta(minutes=10)
    assert (await jobs.enqueue_at("t", 1, later)).run_at == later
    job = await jobs.enqueue_with_options("t", 2, EnqueueOptions(run_at=later, max_retries=5))
    assert (job.run_at, job.max_retries) == (later, 5)


async def test_the_worker_runs_the_highest_priority_due_job_first(
    store: MemoryStore, clock: FakeClock
) -> None:
    """One job per batch: priority first, then the oldest due; a job not yet due waits
    whatever its priority."""
    jobs = Jobs(store, clock=clock, config=JobsConfig(batch_size=1))
    ran: list[str] = []
    jobs.register("t", lambda job: ran.append(str(job.payload)))
    await jobs.enqueue_at("t", "old", T0 - timedelta(hours=1))
    await jobs.enqueue_with_options("t", "urgent", EnqueueOptions(priority=50))
    await jobs.enqueue_with_options("t", "low", EnqueueOptions(priority=-1))
    later = EnqueueOptions(priority=100, run_at=T0 + timedelta(seconds=1))
    await jobs.enqueue_with_options("t", "later", later)
    await jobs.enqueue_many("t", ["batch-1", "batch-2"], EnqueueOptions(priority=50))
    while await jobs.run_once():
        pass
    assert ran == ["urgent", "batch-1", "batch-2", "old", "low"]
    clock.advance(timedelta(seconds=1))
    assert await jobs.run_once() == 1
    assert ran[-1] == "later"


async def test_enqueue_many_is_one_insert(jobs: Jobs) -> None:
    """All payloads become jobs with distinct ids; an invalid one stores none."""
    made = await jobs.enqueue_many("t", [{"n": i} for i in range(5)])
    assert len({job.id for job in made}) == 5
    with pytest.raises(InvalidPayload):
        await jobs.enqueue_many("t", [{"n": 1}, float("nan")])
    assert (await jobs.stats()).total == 5


async def test_ids_are_uuid7_and_time_ordered(jobs: Jobs) -> None:
    """Version 7 UUIDs, increasing within a process."""
    import uuid

    ids = [(await jobs.enqueue("t", None)).id for _ in range(50)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert ids == sorted(ids)


async def test_get_unknown_raises(jobs: Jobs) -> None:
    """Unknown id: JobNotFound, which is also a LookupError."""
    with pytest.raises(JobNotFound, match="'nope' not found"):
        await jobs.get("nope")
    with pytest.raises(LookupError):
        await jobs.get("nope")


async def test_list_newest_first_with_filters(jobs: Jobs, clock: FakeClock) -> None:
    """`list` pages newest first and counts under the same filters; str status works."""
    made = []
    for i in range(5):
        made.append(await jobs.enqueue("a" if i % 2 else "b", i))
        clock.advance(timedelta(seconds=1))
    page = await jobs.list(limit=2, offset=1)
    assert [j.payload for j in page.items] == [3, 2]
    assert (page.total, page.limit, page.offset) == (5, 2, 1)
    only_a = await jobs.list(topic="a", status="pending")
    assert [j.payload for j in only_a.items] == [3, 1]
    assert only_a.total == 2


async def test_list_passes_payloads_and_byte_budget_to_the_store(
    jobs: Jobs, clock: FakeClock
) -> None:
    """`payloads=False` and `max_payload_bytes` reach the store; a bad budget is refused."""
    for text in ("x" * 98, "y" * 98, "z" * 98):  # 100 bytes of JSON each
        await jobs.enqueue("a", text)
        clock.advance(timedelta(seconds=1))
    cut = await jobs.list(max_payload_bytes=250)
    assert ([j.payload for j in cut.items], cut.truncated) == (["z" * 98, "y" * 98], True)
    bare = await jobs.list(payloads=False)
    assert [j.payload for j in bare.items] == [None, None, None]
    assert bare.payloads is False
    for bad in (-1, True, 1.5, "10"):
        with pytest.raises(InvalidOptions, match="max_payload_bytes"):
            await jobs.list(max_payload_bytes=bad)  # type: ignore[arg-type]


async def test_stats_counts_and_success_rate(jobs: Jobs) -> None:
    """success_rate = completed / (completed + failed); 0.0 with nothing finished."""
    assert await jobs.stats() == JobStats(
        pending=0, processing=0, completed=0, failed=0, cancelled=0, total=0, success_rate=0.0
    )
    jobs.register("ok", lambda job: None)
    jobs.register("bad", _raise)
    for _ in range(3):
        await jobs.enqueue("ok", None)
    await jobs.enqueue_with_options("bad", None, EnqueueOptions(max_retries=0))
    await jobs.enqueue("other", None)
    await jobs.cancel((await jobs.enqueue("other", None)).id)
    await jobs.run_once()
    assert await jobs.stats() == JobStats(
        pending=1, processing=0, completed=3, failed=1, cancelled=1, total=6, success_rate=0.75
    )


def _raise(job: Job) -> None:
    raise RuntimeError("always fails")


async def test_requeue_a_failed_job(jobs: Jobs, clock: FakeClock) -> None:
    """Failed -> pending with retries reset; it runs again."""
    runs: list[str] = []
    outcomes = iter([RuntimeError("first"), None])

    def flaky(job: Job) -> None:
        runs.append(job.id)
        error = next(outcomes)
        if error:
            raise error

    jobs.register("t", flaky)
    job = await jobs.enqueue_with_options("t", None, EnqueueOptions(max_retries=0))
    await jobs.run_once()
    failed = await jobs.get(job.id)
    assert (failed.status, failed.last_error) == (JobStatus.FAILED, "RuntimeError: first")
    clock.advance(timedelta(minutes=1))
    again = await jobs.requeue(job.id)
    assert again == attrs.evolve(
        failed, status=JobStatus.PENDING, last_error=None, run_at=clock.now(), updated=clock.now()
    )
    assert await jobs.run_once() == 1
    assert (await jobs.get(job.id)).status is JobStatus.COMPLETED
    assert runs == [job.id, job.id]


@pytest.mark.parametrize("status", ["pending", "completed"])
async def test_requeue_refuses_others(jobs: Jobs, status: str) -> None:
    """Requeue only failed jobs; the job is unchanged."""
    jobs.register("t", lambda job: None)
    job = await jobs.enqueue("t", None)
    if status == "completed":
        await jobs.run_once()
    before = await jobs.get(job.id)
    with pytest.raises(CannotRequeue):
        await jobs.requeue(job.id)
    assert await jobs.get(job.id) == before


async def test_requeue_and_delete_unknown_raise_not_found(jobs: Jobs) -> None:
    """Unknown ids give JobNotFound, not a state error."""
    with pytest.raises(JobNotFound):
        await jobs.requeue("missing")
    with pytest.raises(JobNotFound):
        await jobs.delete("missing")


async def test_delete_pending_and_failed_but_not_completed(jobs: Jobs) -> None:
    """Delete follows the table; a deleted job is gone."""
    jobs.register("ok", lambda job: None)
    jobs.register("bad", _raise)
    done = await jobs.enqueue("ok", None)
    failed = await jobs.enqueue_with_options("bad", None, EnqueueOptions(max_retries=0))
    await jobs.run_once()
    waiting = await jobs.enqueue("ok", None)
    with pytest.raises(CannotDelete, match="it is completed"):
        await jobs.delete(done.id)
    await jobs.delete(failed.id)
    await jobs.delete(waiting.id)
    assert [j.id for j in (await jobs.list()).items] == [done.id]
    with pytest.raises(JobNotFound):
        await jobs.delete(waiting.id)


async def test_unmarshal_payload_into_attrs_and_dataclass(jobs: Jobs) -> None:
    """cattrs structures the payload; a mismatch names the field."""
    import dataclasses

    @attrs.frozen
    class Email:
        to: str
        subject: str

    @dataclasses.dataclass
    class Order:
        order_id: int

    job = await jobs.enqueue("t", {"to": "a@b.c", "subject": "hi"})
    assert job.unmarshal_payload(Email) == Email(to="a@b.c", subject="hi")
    assert job.unmarshal_payload(dict) == {"to": "a@b.c", "subject": "hi"}
    with pytest.raises(InvalidPayload, match="does not fit Order"):
        job.unmarshal_payload(Order)
    bad = await jobs.enqueue("t", {"to": "a@b.c"})
    with pytest.raises(InvalidPayload, match="subject"):
        bad.unmarshal_payload(Email)


async def test_handler_decorator_registers(jobs: Jobs) -> None:
    """`@jobs.handler(topic)` registers and returns the function unchanged."""

    @jobs.handler("send_email")
    async def send(job: Job) -> None:
        return None

    assert jobs.topics == {"send_email"}
    assert callable(send)
