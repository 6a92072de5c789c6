"""Attempt history and results: what each failed attempt leaves in `job.errors`, and a
handler's return value in `job.result`."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import attrs
import pytest

from jobs_core import (
    LOCK_EXPIRED,
    MAX_ERRORS,
    MAX_TRACEBACK_LENGTH,
    AttemptError,
    EnqueueOptions,
    GiveUp,
    Job,
    Jobs,
    JobsConfig,
    JobStatus,
    MemoryStore,
    Outcome,
    Retry,
    errors_from_json,
    errors_to_json,
)
from jobs_core import _transitions as tr
from jobs_core._history import clip_traceback
from jobs_core.testing import FakeClock
from tests.core.conftest import T0, until

LEASE = timedelta(seconds=30)
BACKOFF = timedelta(seconds=10)


def make_jobs(store: MemoryStore, clock: FakeClock, **config: object) -> Jobs:
    values: dict[str, object] = {"backoff": lambda n: BACKOFF}
    values.update(config)
    return Jobs(store, clock=clock, config=JobsConfig(**values))  # type: ignore[arg-type]


def claimed(**fields: Any) -> Job:
    job = tr.new_job(
        job_id="00000000-0000-4000-8000-000000000001",
        topic="t",
        payload=None,
        run_at=T0,
        max_retries=MAX_ERRORS + 10,
        now=T0,
    )
    return attrs.evolve(tr.claim(job, now=T0, lease=LEASE, token="tok"), **fields)


# -- the history, as the transitions keep it -------------------------------------------


def test_each_failed_attempt_appends_one_record_newest_last_capped() -> None:
    job, now = claimed(), T0
    for n in range(MAX_ERRORS + 5):
        job = tr.fail(
            job, token="tok", error=f"e{n}", now=now, backoff=lambda _: BACKOFF, traceback=f"t{n}"
        )
        assert job.errors[-1] == AttemptError(
            attempt=n + 1, at=now, error=f"e{n}", traceback=f"t{n}"
        )
        assert len(job.errors) == min(n + 1, MAX_ERRORS)
        now = job.run_at
        job = tr.claim(job, now=now, lease=LEASE, token="tok")
    assert [e.attempt for e in job.errors] == list(range(6, MAX_ERRORS + 6))


def test_an_expired_lease_a_stop_at_a_cancel_request_and_a_give_up_are_recorded() -> None:
    later = T0 + LEASE + timedelta(microseconds=1)
    expired = tr.expire(claimed(), now=later, backoff=lambda _: BACKOFF)
    assert expired.errors == (AttemptError(attempt=1, at=later, error=LOCK_EXPIRED),)
    stopped = tr.abort(claimed(cancel_requested=T0), token="tok", now=T0)
    assert stopped.errors == (AttemptError(attempt=1, at=T0, error=tr.CANCELLED_ERROR),)
    given = tr.give_up(claimed(retries=2), token="tok", error="never", now=T0, traceback="tb")
    assert given.errors == (AttemptError(attempt=3, at=T0, error="never", traceback="tb"),)


def test_requeue_clears_the_last_error_but_keeps_the_history() -> None:
    failed = tr.give_up(claimed(), token="tok", error="no", now=T0)
    again = tr.requeue(failed, now=T0)
    assert (again.last_error, again.retries, again.errors) == (None, 0, failed.errors)
    rerun = tr.claim(again, now=T0, lease=LEASE, token="t2")
    twice = tr.give_up(rerun, token="t2", error="still no", now=T0)
    assert [(e.attempt, e.error) for e in twice.errors] == [(1, "no"), (1, "still no")]


def test_completion_snooze_and_release_record_no_attempt() -> None:
    job = claimed(errors=(AttemptError(attempt=1, at=T0, error="x"),))
    for after in (
        tr.complete(job, token="tok", now=T0),
        tr.snooze(job, token="tok", now=T0, delay=BACKOFF),
        tr.release(job, token="tok", now=T0),
    ):
        assert after.errors == job.errors


def test_a_long_traceback_keeps_its_end() -> None:
    text = "Traceback (most recent call last):\n" + "  frame\n" * 2000 + "ValueError: the cause"
    cut = clip_traceback(text)
    assert len(cut) == MAX_TRACEBACK_LENGTH
    assert cut.startswith("…[truncated]\n")
    assert cut.endswith("ValueError: the cause")
    assert clip_traceback("short") == "short"
    recorded = tr.fail(
        claimed(), token="tok", error="e", now=T0, backoff=lambda _: BACKOFF, traceback=text
    )
    assert recorded.errors[-1].traceback == cut


def test_the_json_form_round_trips_and_refuses_anything_else() -> None:
    errors = (
        AttemptError(attempt=1, at=T0, error="é ✗", traceback="Traceback\n  x"),
        AttemptError(attempt=2, at=T0 + timedelta(microseconds=7), error=""),
    )
    as_json = errors_to_json(errors)
    assert as_json[1] == {
        "attempt": 2,
        "at": "2030-01-01T00:00:00.000007Z",
        "error": "",
        "traceback": None,
    }
    assert errors_from_json(as_json) == errors
    assert errors_from_json([]) == ()
    good = as_json[0]
    bad: object
    for bad in (
        {},
        [None],
        [{**good, "extra": 1}],
        [{k: v for k, v in good.items() if k != "traceback"}],
        [{**good, "attempt": "1"}],
        [{**good, "attempt": True}],
        [{**good, "at": "2030-01-01T00:00:00"}],
        [{**good, "at": 5}],
        [{**good, "error": None}],
        [{**good, "traceback": 3}],
    ):
        with pytest.raises((TypeError, ValueError)):
            errors_from_json(bad)


# -- through the worker ----------------------------------------------------------------


@pytest.mark.parametrize("threaded", [False, True])
async def test_a_failing_handler_leaves_its_traceback_not_the_workers(
    store: MemoryStore, clock: FakeClock, threaded: bool
) -> None:
    jobs = make_jobs(store, clock)

    def parse(job: Job) -> int:
        payload: dict[str, Any] = job.unmarshal_payload(dict)
        return int(payload["n"])

    async def handler(job: Job) -> None:
        parse(job)

    jobs.register("t", (lambda job: parse(job) and None) if threaded else handler)
    job = await jobs.enqueue_with_options("t", {"n": "x"}, EnqueueOptions(max_retries=1))
    assert await jobs.run_once() == 1
    clock.advance(BACKOFF)
    assert await jobs.run_once() == 1
    failed = await jobs.get(job.id)
    assert failed.status is JobStatus.FAILED
    assert [(e.attempt, e.error) for e in failed.errors] == [
        (1, "ValueError: invalid literal for int() with base 10: 'x'"),
        (2, "ValueError: invalid literal for int() with base 10: 'x'"),
    ]
    assert [e.at for e in failed.errors] == [T0, T0 + BACKOFF]
    trace = failed.errors[-1].traceback
    assert trace is not None
    lines = trace.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1].startswith(f'  File "{__file__}"'), "starts at the handler"
    assert "in parse" in trace
    assert lines[-1] == "ValueError: invalid literal for int() with base 10: 'x'"
    assert "jobs_core" not in trace


async def test_a_timeout_is_recorded_without_a_traceback(
    store: MemoryStore, clock: FakeClock
) -> None:
    jobs = make_jobs(store, clock, lock_duration=timedelta(seconds=5))

    async def hang(job: Job) -> None:
        await clock.sleep(timedelta(hours=1))

    jobs.register("t", hang)
    job = await jobs.enqueue("t", None)
    run = asyncio.create_task(jobs.run_once())
    await until(lambda: clock.sleepers > 0)
    clock.advance(timedelta(seconds=5))
    assert await run == 1
    after = await jobs.get(job.id)
    (entry,) = after.errors
    assert (entry.attempt, entry.error, entry.traceback) == (
        1,
        "timed out after 5s (lock_duration)",
        None,
    )


async def test_retry_and_give_up_keep_the_traceback_of_what_they_were_raised_from(
    store: MemoryStore, clock: FakeClock
) -> None:
    jobs = make_jobs(store, clock)

    async def chained(job: Job) -> None:
        empty: dict[str, int] = {}
        try:
            empty["missing"]
        except KeyError as exc:
            raise Retry("upstream said no", after=BACKOFF) from exc

    async def plain(job: Job) -> None:
        raise GiveUp("bad input")

    jobs.register("chained", chained)
    jobs.register("plain", plain)
    a = await jobs.enqueue("chained", None)
    b = await jobs.enqueue("plain", None)
    assert await jobs.run_once() == 2
    (retried,) = (await jobs.get(a.id)).errors
    assert retried.error == "upstream said no"
    assert retried.traceback is not None
    assert "KeyError: 'missing'" in retried.traceback
    assert "The above exception was the direct cause" in retried.traceback
    (given,) = (await jobs.get(b.id)).errors
    assert (given.error, given.traceback) == ("bad input", None)


# -- results ---------------------------------------------------------------------------


@pytest.mark.parametrize("threaded", [False, True])
async def test_a_handlers_return_value_is_stored_as_the_result(
    store: MemoryStore, clock: FakeClock, threaded: bool
) -> None:
    jobs = make_jobs(store, clock)
    value = {"sent": (1, 2), "to": "é"}

    async def async_handler(job: Job) -> object:
        return value

    jobs.register("t", (lambda job: value) if threaded else async_handler)
    jobs.register("none", lambda job: None)
    job = await jobs.enqueue("t", None)
    nothing = await jobs.enqueue("none", None)
    assert await jobs.run_once() == 2
    done = await jobs.get(job.id)
    assert (done.status, done.result) == (JobStatus.COMPLETED, {"sent": [1, 2], "to": "é"})
    assert (await jobs.get(nothing.id)).result is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({1, 2}, "InvalidResult: result is a set, which is not JSON"),
        ({"x": float("nan")}, "InvalidResult: result['x'] is nan; JSON has no NaN or Infinity"),
        ("x" * 200, "InvalidResult: result is 202 bytes of JSON; the limit is 100 bytes"),
    ],
)
async def test_a_result_that_cannot_be_stored_fails_the_attempt(
    store: MemoryStore, clock: FakeClock, value: object, message: str
) -> None:
    outcomes: list[tuple[Outcome, str | None]] = []

    class Outcomes:
        def finished(
            self, job: Job, outcome: Outcome, duration: timedelta, error: str | None
        ) -> None:
            outcomes.append((outcome, error))

    config = JobsConfig(backoff=lambda n: BACKOFF, max_payload_size=100)
    jobs = Jobs(store, clock=clock, config=config, observers=[Outcomes()])  # type: ignore[list-item]
    jobs.register("t", lambda job: value)
    job = await jobs.enqueue_with_options("t", None, EnqueueOptions(max_retries=0))
    assert await jobs.run_once() == 1
    failed = await jobs.get(job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.result is None
    assert failed.last_error is not None
    assert failed.last_error.startswith(message)
    assert failed.errors[-1].error == failed.last_error
    assert outcomes == [(Outcome.FAILED, failed.last_error)]
