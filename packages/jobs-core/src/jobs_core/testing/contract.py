"""The store contract kit: one suite that every `JobStore` must pass.

Two parts, both run against a fresh, empty store per test or example:

- `JobStoreContract`: example tests. Subclass it in a pytest module and provide a
  `store` fixture yielding a fresh, empty store. Its tests are `async def` and carry
  `pytest.mark.asyncio` themselves, so they run under pytest-asyncio in strict mode (the
  default) as well as auto; an `async` `store` fixture must then be declared with
  `@pytest_asyncio.fixture` (a plain `@pytest.fixture` only works in auto mode).
- `make_state_machine(open_store)`: a Hypothesis `RuleBasedStateMachine` that drives
  the store through random enqueue / claim / complete / fail / advance-clock / expire /
  requeue / delete / list / stats sequences and checks every answer, and the whole
  table after every step, against a model made of `jobs_core`'s pure transitions.

Needs the `jobs-core[testing]` extra: Hypothesis, pytest and pytest-asyncio.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, cast

import attrs
import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)

from jobs_core import _transitions as transitions
from jobs_core._config import JobsConfig
from jobs_core._errors import InvalidOptions, ScheduleNotFound
from jobs_core._events import BaseObserver
from jobs_core._history import MAX_ERRORS
from jobs_core._ids import new_job_id
from jobs_core._maintenance import ScheduleFirer
from jobs_core._model import (
    MAX_PRIORITY,
    MIN_PRIORITY,
    MUTABLE_FIELDS,
    UNREAD_BULKY,
    Job,
    JobQuery,
    JobStatus,
    JobUpdate,
    JSONValue,
)
from jobs_core._schedules import (
    MAX_SLOTS_PER_FIRE,
    MISFIRE_GRACE,
    Misfire,
    Schedule,
    next_slot,
    slot_jobs,
)
from jobs_core._topics import TopicPolicy, claim_allowances, pick_within_allowances
from jobs_core._transitions import FINAL_STATUSES
from jobs_core._validation import MAX_PAGE_SIZE
from jobs_core.ports import JobStore, ScheduleStore

__all__ = [
    "LEASE",
    "JobStoreContract",
    "ScheduleStoreContract",
    "make_job",
    "make_schedule",
    "make_schedule_machine",
    "make_state_machine",
]

#: Lease used by the kit's claims.
LEASE = timedelta(seconds=30)
_T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _backoff(retry: int) -> timedelta:
    return timedelta(seconds=2**retry)


def make_job(
    *,
    topic: str = "t",
    payload: Any = None,
    run_at: datetime = _T0,
    max_retries: int = 3,
    now: datetime = _T0,
    priority: int = 0,
    unique_key: str | None = None,
) -> Job:
    """A new pending job as the service would build it (payload defaults to a small dict)."""
    return transitions.new_job(
        job_id=new_job_id(),
        topic=topic,
        payload={"n": 1} if payload is None else payload,
        run_at=run_at,
        max_retries=max_retries,
        priority=priority,
        unique_key=unique_key,
        now=now,
    )


class JobStoreContract:
    """Example tests of the `JobStore` port. Subclass and provide a `store` fixture."""

    # Explicit, so the async tests run whatever `asyncio_mode` the user's project has.
    pytestmark: ClassVar = [pytest.mark.asyncio]

    async def test_get_returns_what_insert_stored(self, store: JobStore) -> None:
        """Every field round-trips exactly, microseconds and unicode included."""
        payload = {"to": "zoë@example.com", "n": [1, 2.5, None, True], "deep": {"a": {"b": "✓"}}}
        when = datetime(2031, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
        job = make_job(topic="mail.send:v1/eu-1", payload=payload, run_at=when, max_retries=0)
        await store.insert([job])
        assert await store.get(job.id) == job

    async def test_get_unknown_id_raises_job_not_found(self, store: JobStore) -> None:
        """Unknown ids and ids that are not UUIDs both raise `JobNotFound`."""
        from jobs_core import JobNotFound

        for job_id in (str(uuid.uuid4()), "not-a-uuid", ""):
            try:
                await store.get(job_id)
            except JobNotFound:
                continue
            raise AssertionError(f"get({job_id!r}) did not raise JobNotFound")

    async def test_payloads_of_every_json_shape_round_trip(self, store: JobStore) -> None:
        """Scalars, empty containers and a large payload come back unchanged."""
        shapes: list[Any] = [None, True, 0, -(2**62), 1.5, "", "x" * 100_000, [], {}, [[[]]]]
        jobs = [make_job(payload=p) for p in shapes]
        await store.insert(jobs)
        for job in jobs:
            assert (await store.get(job.id)).payload == job.payload

    async def test_insert_is_all_or_nothing(self, store: JobStore) -> None:
        """A batch with a duplicate id fails as a whole."""
        first = make_job()
        await store.insert([first])
        fresh = make_job()
        refused = False
        try:
            await store.insert([fresh, first])
        except Exception:  # noqa: BLE001 - any error will do; what matters is nothing stored
            refused = True
        assert refused, "inserting an existing id did not fail"
        page = await store.list(JobQuery(limit=10))
        assert [job.id for job in page.items] == [first.id]

    async def test_list_is_newest_first_filtered_and_counted(self, store: JobStore) -> None:
        """`created` desc then `id` desc; `total` counts all matches; offset past the end."""
        jobs = [
            make_job(topic="a" if i % 2 else "b", now=_T0 + timedelta(seconds=i // 2))
            for i in range(7)
        ]
        await store.insert(jobs)
        expected = sorted(jobs, key=lambda j: (j.created, j.id), reverse=True)
        page = await store.list(JobQuery(limit=3, offset=1))
        assert (page.total, page.limit, page.offset) == (7, 3, 1)
        assert list(page.items) == expected[1:4]
        only_a = await store.list(JobQuery(topic="a", status=JobStatus.PENDING, limit=10))
        assert list(only_a.items) == [j for j in expected if j.topic == "a"]
        assert only_a.total == 3
        beyond = await store.list(JobQuery(limit=5, offset=50))
        assert (list(beyond.items), beyond.total) == ([], 7)
        none = await store.list(JobQuery(status=JobStatus.FAILED))
        assert (list(none.items), none.total) == ([], 0)

    async def test_list_without_payloads_keeps_everything_else(self, store: JobStore) -> None:
        """`payloads=False`: same rows, order and total; every bulky field (payload,
        attempt history, result) is left unread: `None`, `()`, `None`."""
        jobs = [make_job(payload={"n": i}, now=_T0 + timedelta(seconds=i)) for i in range(4)]
        await store.insert(jobs)
        # The newest job failed once, was requeued, then completed with a result.
        (held,) = await store.claim(topics=["t"], now=_T0 + _TICK, lease=LEASE, limit=1)
        failed = transitions.give_up(
            held, token=str(held.lock_token), error="e", now=_T0, traceback="tb"
        )
        again = transitions.requeue(failed, now=_T0)
        for before, after in ((held, failed), (failed, again)):
            assert list(await store.update([transitions.update(before, after)])) == [True]
        (rerun,) = await store.claim(topics=["t"], now=_T0 + _TICK, lease=LEASE, limit=1)
        done = transitions.complete(rerun, token=str(rerun.lock_token), now=_T0, result=[1])
        assert list(await store.update([transitions.update(rerun, done)])) == [True]
        jobs = [done if job.id == done.id else job for job in jobs]
        expected = sorted(jobs, key=lambda j: (j.created, j.id), reverse=True)
        page = await store.list(JobQuery(limit=4, offset=0, payloads=False))
        assert (page.total, page.limit, page.offset) == (4, 4, 0)
        assert (page.payloads, page.truncated) == (False, False)
        assert list(page.items) == [attrs.evolve(j, **UNREAD_BULKY) for j in expected]
        page = await store.list(JobQuery(limit=3, offset=1, payloads=False))
        assert (page.total, page.limit, page.offset) == (4, 3, 1)
        assert list(page.items) == [attrs.evolve(j, **UNREAD_BULKY) for j in expected[1:4]]
        whole = await store.list(JobQuery(limit=3, offset=1))
        assert whole.payloads is True
        assert list(whole.items) == expected[1:4]

    async def test_the_byte_budget_counts_the_attempt_history_and_the_result(
        self, store: JobStore
    ) -> None:
        """A job whose history or result is large weighs that much in a page's budget."""
        small, big = make_job(payload=1), make_job(payload=2)
        await store.insert([small, big])
        held = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=2)
        by_id = {job.id: job for job in held}
        for job_id, result in ((small.id, None), (big.id, "r" * 3000)):
            job = by_id[job_id]
            token = str(job.lock_token)
            if result is None:
                after = transitions.give_up(job, token=token, error="e" * 3000, now=_T0)
            else:
                after = transitions.complete(job, token=token, now=_T0, result=result)
            assert list(await store.update([transitions.update(job, after)])) == [True]
        # Newest first: `big` then `small` (or the other way, by id): each over 2000 bytes.
        page = await store.list(JobQuery(limit=10, max_payload_bytes=4000))
        assert (len(page.items), page.truncated) == (1, True)
        whole = await store.list(JobQuery(limit=10, max_payload_bytes=7000))
        assert (len(whole.items), whole.truncated) == (2, False)

    async def test_list_stops_at_the_payload_byte_budget(self, store: JobStore) -> None:
        """Rows are taken while their bulky fields' JSON (payload, history, result) fits
        the budget; the page says truncated."""
        # A string of n ASCII letters is n + 2 bytes of JSON text in every store, and an
        # empty history (`[]`) 2 more; no result counts nothing.
        sizes = [1000, 3000, 500, 500, 4000]
        jobs = [
            make_job(payload="x" * (size - 4), now=_T0 + timedelta(seconds=-i))
            for i, size in enumerate(sizes)
        ]
        await store.insert(jobs)  # newest first is the order of `sizes`

        page = await store.list(JobQuery(limit=10, max_payload_bytes=4499))
        assert list(page.items) == jobs[:2], "1000 + 3000 fit, + 500 would not"
        assert (page.total, page.truncated, page.payloads) == (5, True, True)

        exact = await store.list(JobQuery(limit=10, offset=1, max_payload_bytes=4000))
        assert list(exact.items) == jobs[1:4], "a page may use the budget exactly"
        assert (exact.total, exact.truncated) == (5, True)

        huge = await store.list(JobQuery(limit=10, offset=4, max_payload_bytes=10))
        assert list(huge.items) == jobs[4:], "one row even when it alone is over budget"
        assert huge.truncated is False, "nothing more matched"

        first = await store.list(JobQuery(limit=10, max_payload_bytes=0))
        assert (list(first.items), first.truncated) == (jobs[:1], True)

        by_limit = await store.list(JobQuery(limit=2, max_payload_bytes=10_000))
        assert (list(by_limit.items), by_limit.truncated) == (jobs[:2], False)

        bare = await store.list(JobQuery(limit=10, payloads=False, max_payload_bytes=0))
        assert len(bare.items) == 5, "without payloads the budget has nothing to count"
        assert bare.truncated is False

        nothing = await store.list(JobQuery(limit=10, offset=5, max_payload_bytes=0))
        assert (list(nothing.items), nothing.total, nothing.truncated) == ([], 5, False)

    async def test_claim_takes_due_jobs_of_given_topics_in_order(self, store: JobStore) -> None:
        """Order (`run_at`, `id`) at one priority; future jobs and other topics are left
        alone."""
        due = [make_job(run_at=_T0 - timedelta(seconds=s)) for s in (1, 3, 2)]
        future = make_job(run_at=_T0 + timedelta(microseconds=1))
        other = make_job(topic="other", run_at=_T0 - timedelta(hours=1))
        at_now = make_job(run_at=_T0)
        await store.insert([*due, future, other, at_now])
        claimed = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=3)
        expected = sorted([*due, at_now], key=transitions.claim_order_key)[:3]
        assert [j.id for j in claimed] == [j.id for j in expected]
        tokens = {j.lock_token for j in claimed}
        assert None not in tokens and len(tokens) == 3
        for got, before in zip(claimed, expected, strict=True):
            assert got == attrs.evolve(
                before,
                status=JobStatus.PROCESSING,
                locked_until=_T0 + LEASE,
                lock_token=got.lock_token,
                updated=_T0,
            )
            assert await store.get(got.id) == got
        rest = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=10)
        assert {j.id for j in rest} == {j.id for j in [*due, at_now]} - {j.id for j in claimed}
        assert await store.claim(topics=[], now=_T0, lease=LEASE, limit=10) == []

    async def test_claim_takes_the_highest_priority_first(self, store: JobStore) -> None:
        """A higher priority is claimed before older, earlier-due lower ones, across the
        claimed topics; negative priorities come after the default 0."""
        low = make_job(run_at=_T0 - timedelta(hours=2), priority=-5)
        old = make_job(run_at=_T0 - timedelta(hours=1))
        high = make_job(run_at=_T0 - timedelta(seconds=1), now=_T0, priority=10)
        other = make_job(topic="other", run_at=_T0, priority=100)
        await store.insert([low, old, high, other])
        (first,) = await store.claim(topics=["t", "other"], now=_T0, lease=LEASE, limit=1)
        assert (first.id, first.priority) == (other.id, 100)
        rest = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=10)
        assert [j.id for j in rest] == [high.id, old.id, low.id]
        assert [j.priority for j in rest] == [10, 0, -5]
        assert [(await store.get(j.id)).priority for j in rest] == [10, 0, -5]

    async def test_equal_priorities_are_claimed_by_run_at_then_id(self, store: JobStore) -> None:
        """Among jobs of one priority, the earliest due first; at one `run_at`, the
        smallest id first (whatever order they were inserted in)."""
        at = _T0 - timedelta(minutes=1)
        ids = sorted(new_job_id() for _ in range(3))
        same_time = [attrs.evolve(make_job(run_at=at, priority=3), id=i) for i in reversed(ids)]
        earlier = make_job(run_at=at - timedelta(microseconds=1), priority=3)
        lower = make_job(run_at=at - timedelta(hours=1), priority=2)
        await store.insert([lower, *same_time, earlier])
        one_by_one = [await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=1)]
        one_by_one += [await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=1)]
        rest = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=10)
        taken = [j.id for batch in one_by_one for j in batch]
        assert taken == [earlier.id, ids[0]], "each claim picks the next in order"
        assert [j.id for j in rest] == [*ids[1:], lower.id], "and returns its batch in it"

    async def test_a_high_priority_job_not_yet_due_holds_back_no_due_job(
        self, store: JobStore
    ) -> None:
        """The claim takes due jobs only: a future job of the highest priority neither
        runs early nor stops lower due ones; once due, it goes first."""
        future = make_job(run_at=_T0 + timedelta(seconds=1), priority=MAX_PRIORITY)
        due = [make_job(run_at=_T0 - timedelta(seconds=s), priority=MIN_PRIORITY) for s in (1, 2)]
        await store.insert([future, *due])
        claimed = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=1)
        assert [j.id for j in claimed] == [due[1].id]
        later = make_job(run_at=_T0, priority=MIN_PRIORITY)
        await store.insert([later])
        at = _T0 + timedelta(seconds=1)
        (first,) = await store.claim(topics=["t"], now=at, lease=LEASE, limit=1)
        assert first.id == future.id
        claimed = await store.claim(topics=["t"], now=at, lease=LEASE, limit=10)
        assert [j.id for j in claimed] == [due[0].id, later.id]

    async def test_retry_snooze_and_requeue_keep_the_priority(self, store: JobStore) -> None:
        """A job's priority is its own for life: a retried, snoozed or requeued job is
        claimed again ahead of lower ones due earlier."""
        job = make_job(max_retries=1, priority=7)
        await store.insert([job])
        (claimed,) = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=1)
        retry = transitions.fail(
            claimed, token=str(claimed.lock_token), error="boom", now=_T0, backoff=_backoff
        )
        assert list(await store.update([transitions.update(claimed, retry)])) == [True]
        at = _T0 + timedelta(seconds=1)  # the retry's backoff
        waiting = make_job(run_at=_T0 - timedelta(hours=1))
        await store.insert([waiting])
        (again,) = await store.claim(topics=["t"], now=at, lease=LEASE, limit=1)
        assert (again.id, again.priority, again.retries) == (job.id, 7, 1)
        snoozed = transitions.snooze(again, token=str(again.lock_token), now=at, delay=_TICK)
        assert list(await store.update([transitions.update(again, snoozed)])) == [True]
        at += _TICK
        (again,) = await store.claim(topics=["t"], now=at, lease=LEASE, limit=1)
        assert (again.id, again.priority, again.snoozes) == (job.id, 7, 1)
        failed = transitions.fail(
            again, token=str(again.lock_token), error="boom", now=at, backoff=_backoff
        )
        assert failed.status is JobStatus.FAILED
        assert list(await store.update([transitions.update(again, failed)])) == [True]
        requeued = transitions.requeue(failed, now=at)
        assert list(await store.update([transitions.update(failed, requeued)])) == [True]
        assert (await store.get(job.id)).priority == 7
        claimed_now = await store.claim(topics=["t"], now=at, lease=LEASE, limit=10)
        assert [j.id for j in claimed_now] == [job.id, waiting.id]

    async def test_claim_never_hands_out_a_job_twice(self, store: JobStore) -> None:
        """Concurrent claims split the due jobs between them."""
        await store.insert([make_job() for _ in range(20)])
        batches = await asyncio.gather(
            *(store.claim(topics=["t"], now=_T0, lease=LEASE, limit=4) for _ in range(8))
        )
        ids = [job.id for batch in batches for job in batch]
        assert len(ids) == len(set(ids)) == 20

    async def test_update_is_guarded_by_status_and_token(self, store: JobStore) -> None:
        """A stale token or status changes nothing; flags come back in order."""
        a, b = make_job(), make_job()
        await store.insert([a, b])
        claimed = {j.id: j for j in await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=2)}
        ca, cb = claimed[a.id], claimed[b.id]
        done_a = transitions.complete(ca, token=str(ca.lock_token), now=_T0)
        done_b = transitions.complete(cb, token=str(cb.lock_token), now=_T0)
        stale = JobUpdate(
            job=done_b, expected_status=JobStatus.PROCESSING, expected_lock_token="stale"
        )
        flags = await store.update([transitions.update(ca, done_a), stale])
        assert list(flags) == [True, False]
        assert await store.get(a.id) == done_a
        assert await store.get(b.id) == cb
        assert list(await store.update([transitions.update(ca, done_a)])) == [False]

    async def test_failed_attempt_is_stored_with_retry_schedule(self, store: JobStore) -> None:
        """The retry's `run_at`, `retries` and `last_error` are persisted exactly."""
        job = make_job(max_retries=1)
        await store.insert([job])
        (claimed,) = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=1)
        token = str(claimed.lock_token)
        retry = transitions.fail(claimed, token=token, error="boom ✗", now=_T0, backoff=_backoff)
        assert list(await store.update([transitions.update(claimed, retry)])) == [True]
        assert await store.get(job.id) == retry
        assert await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=1) == []
        later = _T0 + timedelta(seconds=1)
        (again,) = await store.claim(topics=["t"], now=later, lease=LEASE, limit=1)
        assert again.retries == 1 and again.lock_token != token

    async def test_attempt_history_is_stored_exactly_and_kept_by_requeue(
        self, store: JobStore
    ) -> None:
        """Each failed attempt's record (number, time, error, traceback) round-trips
        exactly; a requeue clears `last_error` but keeps the history; the history holds
        the newest `MAX_ERRORS` attempts."""
        job = make_job(max_retries=MAX_ERRORS + 1)
        await store.insert([job])
        trace = 'Traceback (most recent call last):\n  File "h.py", line 1\nValueError: ✗ "q"'
        now = _T0
        for n in range(MAX_ERRORS + 1):
            (claimed,) = await store.claim(topics=["t"], now=now, lease=LEASE, limit=1)
            failed = transitions.fail(
                claimed,
                token=str(claimed.lock_token),
                error=f"boom {n} ✗",
                now=now + _TICK,
                backoff=_backoff,
                traceback=None if n % 2 else f"{trace} {n}",
            )
            assert list(await store.update([transitions.update(claimed, failed)])) == [True]
            assert await store.get(job.id) == failed
            now = failed.run_at
        stored = await store.get(job.id)
        assert len(stored.errors) == MAX_ERRORS
        assert [e.attempt for e in stored.errors] == list(range(2, MAX_ERRORS + 2))
        assert stored.errors[-1].error == f"boom {MAX_ERRORS} ✗"
        (claimed,) = await store.claim(topics=["t"], now=now, lease=LEASE, limit=1)
        final = transitions.give_up(claimed, token=str(claimed.lock_token), error="no", now=now)
        assert list(await store.update([transitions.update(claimed, final)])) == [True]
        again = transitions.requeue(final, now=now)
        assert list(await store.update([transitions.update(final, again)])) == [True]
        back = await store.get(job.id)
        assert back == again
        assert (back.last_error, back.errors) == (None, final.errors)

    async def test_a_result_is_stored_with_the_completion(self, store: JobStore) -> None:
        """The handler's JSON result is kept exactly by `complete`; a job completed with
        no result (`None`) has none."""
        with_result, without = make_job(), make_job()
        await store.insert([with_result, without])
        claimed = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=2)
        result: JSONValue = {"sent": 3, "to": ["é@x.org", None], "ok": True, "nested": [[]]}
        for job, value in zip(claimed, [result, None], strict=True):
            done = transitions.complete(job, token=str(job.lock_token), now=_T0, result=value)
            assert list(await store.update([transitions.update(job, done)])) == [True]
            assert await store.get(job.id) == done
            assert (await store.get(job.id)).result == value
        falsy: list[JSONValue] = [[], "", 0, False]
        for value in falsy:  # falsy JSON is a result too, not "none"
            job = make_job()
            await store.insert([job])
            (held,) = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=1)
            done = transitions.complete(held, token=str(held.lock_token), now=_T0, result=value)
            assert list(await store.update([transitions.update(held, done)])) == [True]
            stored = (await store.get(job.id)).result
            assert (stored, type(stored)) == (value, type(value))

    async def test_a_write_blind_to_a_cancel_request_is_refused_unless_it_completes(
        self, store: JobStore
    ) -> None:
        """A worker's retry, give-up, snooze or release decided from a copy read before a
        client's cancel request is refused (`REQUEST_FIELDS`): it would clear the request
        and let the job run again. A completion is written: the handler returned first."""
        job = make_job(max_retries=3)
        await store.insert([job])
        (held,) = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=1)
        token = str(held.lock_token)
        asked = transitions.cancel(held, now=_T0)
        assert list(await store.update([transitions.update(held, asked)])) == [True]
        blind = [
            transitions.fail(held, token=token, error="e", now=_T0, backoff=_backoff),
            transitions.give_up(held, token=token, error="e", now=_T0),
            transitions.snooze(held, token=token, now=_T0, delay=LEASE),
            transitions.release(held, token=token, now=_T0),
        ]
        for after in blind:
            assert list(await store.update([transitions.update(held, after)])) == [False]
            assert await store.get(job.id) == asked
        done = transitions.complete(held, token=token, now=_T0, result=1)
        assert list(await store.update([transitions.update(held, done)])) == [True]
        assert await store.get(job.id) == done

    async def test_expired_lists_only_leases_that_ran_out(self, store: JobStore) -> None:
        """`locked_until < now` is expired; `locked_until == now` is not."""
        jobs = [make_job() for _ in range(3)]
        await store.insert(jobs)
        claimed = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=3)
        end = _T0 + LEASE
        assert await store.expired(now=end, limit=10) == []
        late = await store.expired(now=end + timedelta(microseconds=1), limit=2)
        assert [j.id for j in late] == sorted(j.id for j in claimed)[:2]
        assert all(j.status is JobStatus.PROCESSING for j in late)

    async def test_renew_extends_live_leases_and_reports_lost_ones(self, store: JobStore) -> None:
        """Per renewal, the job as stored after it, or None: a stale token and a job that
        is no longer processing are lost leases. The writes share one transaction."""
        await store.insert([make_job() for _ in range(3)])
        a, b, c = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=3)
        later = _T0 + LEASE / 2
        done = transitions.complete(c, token=str(c.lock_token), now=_T0)
        assert list(await store.update([transitions.update(c, done)])) == [True]
        renewals = [
            JobUpdate(
                job=transitions.renew(
                    j, token=str(j.lock_token), now=later, lease=LEASE, new_token=uuid.uuid4().hex
                ),
                expected_status=JobStatus.PROCESSING,
                expected_lock_token=token,
            )
            for j, token in ((a, a.lock_token), (b, "stale"), (c, c.lock_token))
        ]
        got = await store.renew(renewals)
        assert list(got) == [renewals[0].job, None, None]
        assert await store.get(a.id) == renewals[0].job
        assert await store.get(b.id) == b
        assert await store.get(c.id) == done
        assert await store.renew([]) == []

    async def test_a_renewal_repeated_after_it_applied_succeeds_again(
        self, store: JobStore
    ) -> None:
        """A store may repeat a renewal whose reply was lost: the row already holds the
        new token, and that counts as the guard holding."""
        await store.insert([make_job()])
        (claimed,) = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=1)
        renewed = transitions.renew(
            claimed, token=str(claimed.lock_token), now=_T0, lease=LEASE, new_token=uuid.uuid4().hex
        )
        change = transitions.update(claimed, renewed)
        assert list(await store.renew([change])) == [renewed]
        assert list(await store.renew([change])) == [renewed]
        assert await store.get(claimed.id) == renewed

    async def test_renew_writes_only_the_lease_and_returns_what_others_wrote(
        self, store: JobStore
    ) -> None:
        """A renewal built from the worker's old copy of the job leaves every field but
        `RENEW_FIELDS` as stored, and hands the stored values back to the worker."""
        await store.insert([make_job()])
        (claimed,) = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=1)
        noted = attrs.evolve(claimed, last_error="written by someone else", updated=_T0)
        assert list(await store.update([transitions.update(claimed, noted)])) == [True]
        later = _T0 + timedelta(seconds=1)
        renewed = transitions.renew(
            claimed,
            token=str(claimed.lock_token),
            now=later,
            lease=LEASE,
            new_token=uuid.uuid4().hex,
        )
        (got,) = await store.renew([transitions.update(claimed, renewed)])
        expected = attrs.evolve(
            noted, **{name: getattr(renewed, name) for name in transitions.RENEW_FIELDS}
        )
        assert got == expected
        assert await store.get(claimed.id) == expected

    async def test_a_rescue_read_before_a_renewal_is_refused(self, store: JobStore) -> None:
        """The renewal takes a new token, so a rescuer that saw the lease expired just
        before it (and writes under the old token) changes nothing; nor does a late
        report under the old token."""
        await store.insert([make_job()])
        (claimed,) = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=1)
        end, tick = _T0 + LEASE, timedelta(microseconds=1)
        (seen,) = await store.expired(now=end + tick, limit=1)
        renewed = transitions.renew(
            claimed, token=str(claimed.lock_token), now=end, lease=LEASE, new_token=uuid.uuid4().hex
        )
        assert list(await store.renew([transitions.update(claimed, renewed)])) == [renewed]
        rescue = transitions.expire(seen, now=end + tick, backoff=_backoff)
        assert list(await store.update([transitions.update(seen, rescue)])) == [False]
        assert await store.expired(now=end + tick, limit=1) == []
        late = transitions.complete(claimed, token=str(claimed.lock_token), now=end)
        assert list(await store.update([transitions.update(claimed, late)])) == [False]
        done = transitions.complete(renewed, token=str(renewed.lock_token), now=end + tick)
        assert list(await store.update([transitions.update(renewed, done)])) == [True]
        assert await store.get(claimed.id) == done

    async def test_delete_is_guarded_by_status(self, store: JobStore) -> None:
        """Deleting with the wrong expected status, or twice, returns False."""
        job = make_job()
        await store.insert([job])
        assert await store.delete(job.id, expected_status=JobStatus.FAILED) is False
        assert await store.delete(job.id, expected_status=JobStatus.PENDING) is True
        assert await store.delete(job.id, expected_status=JobStatus.PENDING) is False
        assert await store.delete("not-a-uuid", expected_status=JobStatus.PENDING) is False

    async def test_counts_by_status(self, store: JobStore) -> None:
        """Counts follow the transitions."""
        await store.insert([make_job() for _ in range(4)])
        (claimed,) = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=1)
        done = transitions.complete(claimed, token=str(claimed.lock_token), now=_T0)
        await store.update([transitions.update(claimed, done)])
        await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=1)
        waiting = (await store.list(JobQuery(status=JobStatus.PENDING, limit=1))).items[0]
        cancelled = transitions.cancel(waiting, now=_T0)
        assert list(await store.update([transitions.update(waiting, cancelled)])) == [True]
        counts = await store.count_by_status()
        assert {s: counts.get(s, 0) for s in JobStatus} == {
            JobStatus.PENDING: 1,
            JobStatus.PROCESSING: 1,
            JobStatus.COMPLETED: 1,
            JobStatus.FAILED: 0,
            JobStatus.CANCELLED: 1,
        }

    async def test_a_snoozed_job_waits_its_delay_and_keeps_its_attempts(
        self, store: JobStore
    ) -> None:
        """A snooze is a guarded write: `pending` at `now + delay`, the snooze counted, no
        attempt counted; the job is claimable again once due. A give-up ends it failed."""
        await store.insert([make_job(max_retries=3)])
        (claimed,) = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=1)
        token = str(claimed.lock_token)
        snoozed = transitions.snooze(claimed, token=token, now=_T0, delay=timedelta(minutes=1))
        assert list(await store.update([transitions.update(claimed, snoozed)])) == [True]
        assert await store.get(claimed.id) == snoozed
        assert (snoozed.snoozes, snoozed.retries) == (1, 0)
        assert await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=1) == []
        later = _T0 + timedelta(minutes=1)
        (again,) = await store.claim(topics=["t"], now=later, lease=LEASE, limit=1)
        assert again.snoozes == 1
        failed = transitions.give_up(again, token=str(again.lock_token), error="no", now=later)
        assert list(await store.update([transitions.update(again, failed)])) == [True]
        assert (await store.get(claimed.id)).status is JobStatus.FAILED

    async def test_a_cancelled_job_is_never_claimed(self, store: JobStore) -> None:
        """Cancelling a waiting job is a guarded write; claims pass it over, and it can
        be requeued (then claimed) or deleted."""
        job = make_job()
        await store.insert([job])
        cancelled = transitions.cancel(job, now=_T0)
        assert cancelled.status is JobStatus.CANCELLED
        assert list(await store.update([transitions.update(job, cancelled)])) == [True]
        assert await store.get(job.id) == cancelled
        assert await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=10) == []
        again = transitions.requeue(cancelled, now=_T0)
        assert list(await store.update([transitions.update(cancelled, again)])) == [True]
        (claimed,) = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=10)
        assert claimed.id == job.id

    async def test_a_cancel_request_reaches_the_worker_through_its_renewal(
        self, store: JobStore
    ) -> None:
        """A cancel request on a running job keeps its lease; the worker's next renewal,
        built from its own older copy, keeps the request and hands it back; the worker's
        abort then ends the job cancelled."""
        await store.insert([make_job()])
        (claimed,) = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=1)
        asked = transitions.cancel(claimed, now=_T0)
        assert (asked.status, asked.cancel_requested) == (JobStatus.PROCESSING, _T0)
        assert list(await store.update([transitions.update(claimed, asked)])) == [True]
        later = _T0 + timedelta(seconds=1)
        renewed = transitions.renew(
            claimed,
            token=str(claimed.lock_token),
            now=later,
            lease=LEASE,
            new_token=uuid.uuid4().hex,
        )
        (seen,) = await store.renew([transitions.update(claimed, renewed)])
        assert seen is not None
        assert seen.cancel_requested == _T0
        stopped = transitions.abort(seen, token=str(seen.lock_token), now=later)
        assert list(await store.update([transitions.update(seen, stopped)])) == [True]
        final = await store.get(claimed.id)
        assert (final.status, final.lock_token, final.cancel_requested) == (
            JobStatus.CANCELLED,
            None,
            _T0,
        )

    # -- delete_finished (retention) ---------------------------------------------------

    async def test_delete_finished_takes_the_oldest_final_jobs_first(self, store: JobStore) -> None:
        """Only the asked-for final statuses, `updated < before` (strict), by (`updated`,
        `id`), at most `limit`; pending and processing jobs are never touched."""
        at = [_T0 + timedelta(seconds=s) for s in range(5)]
        tied = [_finished_job(JobStatus.COMPLETED, at[1]) for _ in range(3)]
        oldest = _finished_job(JobStatus.COMPLETED, at[0])
        on_the_cut = _finished_job(JobStatus.COMPLETED, at[2])
        failed = _finished_job(JobStatus.FAILED, at[0])
        old_pending = make_job(now=at[0] - timedelta(days=1))
        running = attrs.evolve(
            make_job(now=at[0] - timedelta(days=1)),
            status=JobStatus.PROCESSING,
            locked_until=at[0],
            lock_token=uuid.uuid4().hex,
        )
        await store.insert([*tied, oldest, on_the_cut, failed, old_pending, running])
        completed = [JobStatus.COMPLETED]

        assert await store.delete_finished(statuses=completed, before=at[2], limit=2) == 2
        first_two = sorted([oldest, *tied], key=lambda j: (j.updated, j.id))[:2]
        left = {j.id for j in (await store.list(JobQuery(limit=20))).items}
        assert not left & {j.id for j in first_two}, "the two oldest went"
        assert len(left) == 6

        assert await store.delete_finished(statuses=completed, before=at[2], limit=10) == 2
        assert await store.delete_finished(statuses=completed, before=at[2], limit=10) == 0
        assert await store.get(on_the_cut.id) == on_the_cut, "updated == before stays"
        assert await store.get(failed.id) == failed, "failed was not asked for"

        every = [JobStatus.FAILED, JobStatus.COMPLETED]
        far = at[4] + timedelta(days=365)
        assert await store.delete_finished(statuses=every, before=far, limit=10) == 2
        remaining = await store.list(JobQuery(limit=20))
        assert {j.id for j in remaining.items} == {old_pending.id, running.id}
        assert await store.get(running.id) == running

    async def test_delete_finished_refuses_anything_but_final_statuses(
        self, store: JobStore
    ) -> None:
        """Non-final or no statuses, and `limit < 1`, are `InvalidOptions`; nothing goes."""
        jobs = [
            _finished_job(JobStatus.COMPLETED, _T0),
            _finished_job(JobStatus.FAILED, _T0),
            make_job(),
        ]
        await store.insert(jobs)
        later = _T0 + timedelta(hours=1)
        refused: list[tuple[Any, Any, Any]] = [
            ([JobStatus.PENDING], later, 10),
            ([JobStatus.PROCESSING], later, 10),
            ([JobStatus.COMPLETED, JobStatus.PENDING], later, 10),
            ([], later, 10),
            ([JobStatus.COMPLETED], later, 0),
            ([JobStatus.FAILED], later, -1),
            ([JobStatus.FAILED], later.replace(tzinfo=None), 10),
        ]
        for statuses, before, limit in refused:
            with pytest.raises(InvalidOptions):
                await store.delete_finished(statuses=statuses, before=before, limit=limit)
        assert (await store.list(JobQuery(limit=10))).total == 3
        assert await store.delete_finished(statuses=FINAL_STATUSES, before=later, limit=10) == 2

    async def test_delete_finished_in_rounds_until_short(self, store: JobStore) -> None:
        """A retention duty's loop: full rounds, then a short one, then nothing."""
        await store.insert([_finished_job(JobStatus.COMPLETED, _T0) for _ in range(7)])
        later = _T0 + timedelta(seconds=1)
        rounds = [
            await store.delete_finished(statuses=FINAL_STATUSES, before=later, limit=3)
            for _ in range(4)
        ]
        assert rounds == [3, 3, 1, 0]
        assert (await store.list(JobQuery(limit=10))).total == 0

    async def test_concurrent_bulk_deletes_count_each_job_once(self, store: JobStore) -> None:
        """Racing calls never report a job twice nor delete one they should not."""
        keep = _finished_job(JobStatus.COMPLETED, _T0 + timedelta(hours=1))
        await store.insert([_finished_job(JobStatus.FAILED, _T0) for _ in range(12)] + [keep])
        later = _T0 + timedelta(seconds=1)
        counts = await asyncio.gather(
            *(
                store.delete_finished(statuses=FINAL_STATUSES, before=later, limit=5)
                for _ in range(4)
            )
        )
        assert all(0 <= n <= 5 for n in counts)
        left = (await store.list(JobQuery(limit=20))).total
        assert sum(counts) == 13 - left
        rest = await store.delete_finished(statuses=FINAL_STATUSES, before=later, limit=20)
        assert sum(counts) + rest == 12
        assert await store.get(keep.id) == keep

    async def test_claim_never_returns_a_job_deleted_in_bulk(self, store: JobStore) -> None:
        """A failed job deleted by `delete_finished` while it is requeued and claimed is
        either requeued (and claimable) or gone (never claimed); counts and list agree."""
        doomed = [make_job(max_retries=0) for _ in range(3)]
        done = [make_job() for _ in range(3)]
        await store.insert([*doomed, *done])
        claimed = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=6)
        failed: list[Job] = []
        finish = []
        for job in claimed:
            token = str(job.lock_token)
            if job.max_retries == 0:
                after = transitions.fail(job, token=token, error="x", now=_T0, backoff=_backoff)
                failed.append(after)
            else:
                after = transitions.complete(job, token=token, now=_T0)
            finish.append(transitions.update(job, after))
        assert list(await store.update(finish)) == [True] * 6
        assert {j.status for j in failed} == {JobStatus.FAILED}
        waiting = make_job()
        await store.insert([waiting])

        later = _T0 + timedelta(seconds=1)
        requeues = [transitions.update(j, transitions.requeue(j, now=later)) for j in failed]
        deleted, flags, first = await asyncio.gather(
            store.delete_finished(statuses=[JobStatus.FAILED], before=later, limit=10),
            asyncio.gather(*(store.update([change]) for change in requeues)),
            store.claim(topics=["t"], now=later, lease=LEASE, limit=10),
        )
        requeued = {c.job.id for c, (ok,) in zip(requeues, flags, strict=True) if ok}
        gone = {j.id for j in failed} - requeued
        assert deleted == len(gone)
        rest = await store.claim(topics=["t"], now=later, lease=LEASE, limit=10)
        taken = [j.id for j in [*first, *rest]]
        assert sorted(taken) == sorted({waiting.id} | requeued), "every live job, once"
        assert not gone & set(taken), "a deleted job was claimed"

        page = await store.list(JobQuery(limit=20))
        counts = await store.count_by_status()
        assert page.total == sum(counts.values()) == 7 - len(gone)
        for status in JobStatus:
            listed = await store.list(JobQuery(status=status, limit=20))
            assert listed.total == counts.get(status, 0), status
        assert counts.get(JobStatus.COMPLETED, 0) == 3
        assert counts.get(JobStatus.FAILED, 0) == 0

    # -- topic policies: paused topics, global and per-claim limits ---------------

    async def test_a_paused_topic_is_never_claimed_until_resumed(self, store: JobStore) -> None:
        """Pausing is stored: claims skip the topic's jobs (others' are claimed), an
        insert still works, and resuming makes them claimable again, in order."""
        held = [make_job(topic="t", priority=p) for p in (0, 5)]
        other = make_job(topic="other")
        await store.set_paused("t", True)
        await store.set_paused("t", True)  # idempotent
        await store.insert([*held, other])
        claimed = await store.claim(topics=["t", "other"], now=_T0, lease=LEASE, limit=10)
        assert [j.id for j in claimed] == [other.id]
        assert await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=10) == []
        (info,) = [i for i in await store.topics() if i.topic == "t"]
        assert (info.paused, info.max_running, info.counts[JobStatus.PENDING]) == (True, None, 2)
        await store.set_paused("t", False)
        again = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=10)
        assert [j.id for j in again] == [held[1].id, held[0].id]

    async def test_a_global_limit_is_never_exceeded_by_claims(self, store: JobStore) -> None:
        """`max_running` counts the topic's `processing` rows, an expired lease not yet
        rescued too; a finished, retried or cancelled job frees its slot; other topics
        are not held back; 0 holds the topic; None lifts the limit."""
        jobs = [make_job(run_at=_T0 - timedelta(seconds=i)) for i in range(6)]
        free = make_job(topic="other")
        await store.insert([*jobs, free])
        await store.set_max_running("t", 2)
        first = await store.claim(topics=["t", "other"], now=_T0, lease=LEASE, limit=10)
        assert sorted(j.id for j in first) == sorted([jobs[5].id, jobs[4].id, free.id])
        assert await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=10) == []
        late = _T0 + LEASE + timedelta(seconds=1)  # both leases ran out, nobody rescued them
        assert await store.claim(topics=["t"], now=late, lease=LEASE, limit=10) == []
        a, b = (j for j in first if j.topic == "t")
        retried = transitions.fail(
            a, token=str(a.lock_token), error="x", now=_T0, backoff=lambda _: timedelta(0)
        )
        assert retried.status is JobStatus.PENDING
        done = transitions.complete(b, token=str(b.lock_token), now=_T0)
        changes = [transitions.update(a, retried), transitions.update(b, done)]
        assert list(await store.update(changes)) == [True, True]
        second = await store.claim(topics=["t"], now=late, lease=LEASE, limit=10)
        assert len(second) == 2
        # a cancel request on a running job leaves it running: it still holds its slot
        cancel = transitions.cancel(second[0], now=late)
        assert list(await store.update([transitions.update(second[0], cancel)])) == [True]
        assert await store.claim(topics=["t"], now=late, lease=LEASE, limit=10) == []
        await store.set_max_running("t", 0)
        (info,) = [i for i in await store.topics() if i.topic == "t"]
        assert (info.paused, info.max_running, info.running) == (False, 0, 2)
        await store.set_max_running("t", None)
        rest = await store.claim(topics=["t"], now=late, lease=LEASE, limit=10)
        assert len(rest) == 3  # six, less the completed one and the two running
        (info,) = [i for i in await store.topics() if i.topic == "t"]
        assert (info.max_running, info.running) == (None, 2 + len(rest))

    async def test_caps_bound_a_claim_per_topic_in_claim_order(self, store: JobStore) -> None:
        """A claim takes at most its cap of a capped topic and goes on in `CLAIM_ORDER`
        with the others; a cap of 0 takes none; a global limit and a cap: the smaller."""
        capped = [
            make_job(topic="a", priority=9, run_at=_T0 - timedelta(seconds=i)) for i in range(4)
        ]
        plain = [make_job(topic="b", run_at=_T0 - timedelta(seconds=i)) for i in range(3)]
        await store.insert([*capped, *plain])
        claimed = await store.claim(topics=["a", "b"], now=_T0, lease=LEASE, limit=4, caps={"a": 2})
        assert [j.id for j in claimed] == [capped[3].id, capped[2].id, plain[2].id, plain[1].id]
        assert await store.claim(topics=["a"], now=_T0, lease=LEASE, limit=4, caps={"a": 0}) == []
        await store.set_max_running("a", 3)
        (one,) = await store.claim(topics=["a"], now=_T0, lease=LEASE, limit=4, caps={"a": 2})
        assert one.id == capped[1].id

    async def test_topics_counts_every_topic_by_status_with_its_policy(
        self, store: JobStore
    ) -> None:
        """One entry per topic with jobs or a policy, by name; resetting a policy to the
        defaults leaves a topic without jobs out."""
        assert list(await store.topics()) == []
        await store.insert([make_job(topic="b"), make_job(topic="b"), make_job(topic="a")])
        await store.claim(topics=["b"], now=_T0, lease=LEASE, limit=1)
        await store.set_max_running("c", 4)
        await store.set_paused("c", True)
        infos = list(await store.topics())
        assert [i.topic for i in infos] == ["a", "b", "c"]
        zero = dict.fromkeys(JobStatus, 0)
        assert dict(infos[0].counts) == zero | {JobStatus.PENDING: 1}
        assert dict(infos[1].counts) == zero | {JobStatus.PENDING: 1, JobStatus.PROCESSING: 1}
        assert (dict(infos[2].counts), infos[2].paused, infos[2].max_running) == (zero, True, 4)
        await store.set_paused("c", False)
        assert [(i.paused, i.max_running) for i in await store.topics()][2] == (False, 4)
        await store.set_max_running("c", None)
        assert [i.topic for i in await store.topics()] == ["a", "b"]

    async def test_topics_give_each_topic_its_oldest_pending_run_at(self, store: JobStore) -> None:
        """The lag to alert on: the earliest `run_at` among a topic's pending jobs (not its
        running or finished ones), and how long it has been due."""
        early, late = _T0 - timedelta(minutes=3), _T0 + timedelta(hours=1)
        await store.insert(
            [
                make_job(topic="a", run_at=early, now=early),
                make_job(topic="a", run_at=late, now=early),
                make_job(topic="b", run_at=late, now=early),
                make_job(topic="c", run_at=early - timedelta(days=1), now=early),
            ]
        )
        await store.claim(topics=["c"], now=_T0, lease=LEASE, limit=1)
        infos = {info.topic: info for info in await store.topics()}
        assert [infos[t].oldest_pending for t in "abc"] == [early, late, None]
        assert infos["a"].due_lag(_T0) == timedelta(minutes=3)
        assert infos["b"].due_lag(_T0) == timedelta(0)  # nothing due yet
        assert infos["c"].due_lag(_T0) == timedelta(0)  # running, not waiting

    # -- unique keys ---------------------------------------------------------------

    async def test_a_unique_key_round_trips_and_a_duplicate_answers_the_holder(
        self, store: JobStore
    ) -> None:
        """A second job of the topic and key stores nothing: its answer is the first."""
        first = make_job(unique_key="report:2030-01-01 ✓")
        assert list(await store.insert([first])) == [first]
        assert await store.get(first.id) == first
        again = make_job(unique_key=first.unique_key, payload={"other": True})
        assert list(await store.insert([again])) == [first]
        assert [j.id for j in (await store.list(JobQuery(limit=10))).items] == [first.id]
        (claimed,) = await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=1)
        assert list(await store.insert([make_job(unique_key=first.unique_key)])) == [claimed]

    async def test_unique_keys_are_scoped_to_the_topic(self, store: JobStore) -> None:
        """The same key in two topics is two keys; jobs without a key never collide."""
        jobs = [
            make_job(topic="a", unique_key="k"),
            make_job(topic="b", unique_key="k"),
            make_job(topic="a"),
            make_job(topic="a"),
        ]
        assert list(await store.insert(jobs)) == jobs
        assert (await store.list(JobQuery(limit=10))).total == 4

    async def test_a_batch_resolves_each_job_on_its_own(self, store: JobStore) -> None:
        """In one batch a later job of a key taken earlier in it, or before it, answers
        the holder; the others are stored, all in one transaction."""
        held = make_job(unique_key="old")
        await store.insert([held])
        a, a_again, plain, b, old = (
            make_job(unique_key="new"),
            make_job(unique_key="new"),
            make_job(),
            make_job(unique_key="other"),
            make_job(unique_key="old"),
        )
        answer = list(await store.insert([a, a_again, plain, b, old]))
        assert answer == [a, a, plain, b, held]
        page = await store.list(JobQuery(limit=10))
        assert {j.id for j in page.items} == {held.id, a.id, plain.id, b.id}

    async def test_a_final_job_frees_its_key(self, store: JobStore) -> None:
        """Completed, failed and cancelled jobs hold no key: a new job may take it."""
        done = make_job(unique_key="done", max_retries=0)
        lost = make_job(unique_key="lost", max_retries=0)
        dropped = make_job(unique_key="dropped")
        await store.insert([done, lost, dropped])
        claimed = {j.id: j for j in await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=2)}
        ended = [
            transitions.complete(claimed[done.id], token=str(claimed[done.id].lock_token), now=_T0),
            transitions.fail(
                claimed[lost.id],
                token=str(claimed[lost.id].lock_token),
                error="boom",
                now=_T0,
                backoff=_backoff,
            ),
        ]
        updates = [transitions.update(claimed[j.id], j) for j in ended]
        updates.append(transitions.update(dropped, transitions.cancel(dropped, now=_T0)))
        assert list(await store.update(updates)) == [True] * 3
        fresh = [make_job(unique_key=key) for key in ("done", "lost", "dropped")]
        assert list(await store.insert(fresh)) == fresh

    async def test_retry_and_rescue_keep_the_key(self, store: JobStore) -> None:
        """A retried job (pending again) and a rescued one still hold their keys."""
        retried = make_job(unique_key="r", max_retries=2)
        rescued = make_job(unique_key="s", max_retries=2)
        await store.insert([retried, rescued])
        by_id = {j.id: j for j in await store.claim(topics=["t"], now=_T0, lease=LEASE, limit=2)}
        job = by_id[retried.id]
        retry = transitions.fail(
            job, token=str(job.lock_token), error="boom", now=_T0, backoff=_backoff
        )
        assert retry.status is JobStatus.PENDING
        assert list(await store.update([transitions.update(job, retry)])) == [True]
        later = _T0 + LEASE + _TICK
        (stale,) = await store.expired(now=later, limit=10)
        back = transitions.expire(stale, now=later, backoff=_backoff)
        assert back.status is JobStatus.PENDING
        assert list(await store.update([transitions.update(stale, back)])) == [True]
        answer = await store.insert([make_job(unique_key="r"), make_job(unique_key="s")])
        assert [j.id for j in answer] == [retried.id, rescued.id]

    async def test_requeue_of_a_job_whose_key_is_taken_raises(self, store: JobStore) -> None:
        """Requeueing a final job while another active job holds its key raises
        `UniqueKeyTaken` and writes nothing, in the whole batch; once the holder is
        final, the requeue goes through."""
        from jobs_core import UniqueKeyTaken

        old = make_job(unique_key="k")
        await store.insert([old])
        cancelled = transitions.cancel(old, now=_T0)
        assert list(await store.update([transitions.update(old, cancelled)])) == [True]
        holder = make_job(unique_key="k")
        assert list(await store.insert([holder])) == [holder]
        other = make_job()
        await store.insert([other])
        requeued = transitions.requeue(cancelled, now=_T0)
        touched = transitions.cancel(other, now=_T0)
        with pytest.raises(UniqueKeyTaken) as caught:
            await store.update(
                [transitions.update(other, touched), transitions.update(cancelled, requeued)]
            )
        taken = caught.value
        assert (taken.job_id, taken.topic, taken.unique_key) == (old.id, "t", "k")
        assert taken.holder_id in (None, holder.id)
        assert (await store.get(old.id)).status is JobStatus.CANCELLED
        assert (await store.get(other.id)).status is JobStatus.PENDING
        done = transitions.cancel(holder, now=_T0)
        assert list(await store.update([transitions.update(holder, done)])) == [True]
        assert list(await store.update([transitions.update(cancelled, requeued)])) == [True]
        assert list(await store.insert([make_job(unique_key="k")])) == [requeued]


def _finished_job(status: JobStatus, updated: datetime) -> Job:
    """A job that ended in `status` at `updated` (built directly, to set the time exactly)."""
    job = make_job(now=updated - timedelta(minutes=1), run_at=updated - timedelta(minutes=1))
    error = "gave up" if status is JobStatus.FAILED else None
    return attrs.evolve(job, status=status, updated=updated, last_error=error)


# -- the stateful model test ----------------------------------------------------------

_TOPICS = ("a", "b")
_TICK = timedelta(microseconds=1)
_OFFSETS = st.sampled_from([-10.0, -1.0, 0.0, 0.5, 1.0, 10.0]).map(lambda s: timedelta(seconds=s))
_STEPS = st.sampled_from(
    [
        timedelta(0),
        timedelta(microseconds=1),
        LEASE - timedelta(microseconds=1),
        LEASE,
        LEASE + timedelta(microseconds=1),
        timedelta(seconds=1),
        timedelta(hours=1),
    ]
)
#: Mostly the default, a few levels each side, and the ends of the range.
_PRIORITIES = st.sampled_from([0, 0, 0, 1, 1, -1, 5, MIN_PRIORITY, MAX_PRIORITY])
#: Mostly no key; two keys, so batches and topics collide often.
_KEYS = st.sampled_from([None, None, "x", "y"])
_PAYLOADS = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
).filter(lambda p: "\\u0000" not in json.dumps(p))  # the core refuses NUL; so must tests


class _StoreOnItsOwnLoop(RuleBasedStateMachine):
    """The base of the kit's state machines: each example opens a store with the class's
    `open` (a plain or an `async def` function), inside the machine's own event loop,
    runs every step there (`run`), and closes the store at its end. No rules of its own."""

    open: ClassVar[Any]  # staticmethod(open_store), set by each factory

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.store: Any = self.run(self._open())

    async def _open(self) -> Any:
        made = self.open()
        return await made if inspect.isawaitable(made) else made

    def run(self, awaitable: Awaitable[Any]) -> Any:
        async def call() -> Any:
            return await awaitable

        return self.runner.run(call())

    def teardown(self) -> None:
        try:
            self.run(self.store.close())
        finally:
            self.runner.close()


def make_state_machine(
    open_store: Callable[[], Awaitable[JobStore] | JobStore],
    *,
    budget: settings | None = None,
) -> type[RuleBasedStateMachine]:
    """A model-checking state machine over stores made by `open_store` (fresh and empty).

    `open_store` (a plain or an `async def` function) is called, and awaited if it
    returns an awaitable, inside the machine's own event loop at the start of every
    example; the store is closed at its end. Use `.TestCase` as a pytest test class.
    """

    class StoreMachine(_StoreOnItsOwnLoop):
        job_ids = Bundle("job_ids")
        open: ClassVar = staticmethod(open_store)

        def __init__(self) -> None:
            super().__init__()
            self.now = _T0
            self.model: dict[str, Job] = {}
            self.old_tokens: list[str] = []
            self.policies: dict[str, TopicPolicy] = {}

        # -- rules -----------------------------------------------------------------

        @initialize()
        def empty(self) -> None:
            assert self.run(self.store.list(JobQuery(limit=1))).total == 0, "store not empty"

        @rule(
            target=job_ids,
            topic=st.sampled_from(_TOPICS),
            payload=_PAYLOADS,
            offset=_OFFSETS,
            max_retries=st.sampled_from([0, 1, 3]),
            shapes=st.lists(st.tuples(_PRIORITIES, _KEYS), min_size=1, max_size=3),
        )
        def enqueue(
            self,
            topic: str,
            payload: Any,
            offset: timedelta,
            max_retries: int,
            shapes: list[tuple[int, str | None]],
        ) -> Any:
            jobs = [
                make_job(
                    topic=topic,
                    payload=payload,
                    run_at=self.now + offset,
                    max_retries=max_retries,
                    now=self.now,
                    priority=priority,
                    unique_key=key,
                )
                for priority, key in shapes
            ]
            answer = list(self.run(self.store.insert(jobs)))
            expected = []
            for job in jobs:
                holder = self._holder(job)
                expected.append(job if holder is None else holder)
                if holder is None:
                    self.model[job.id] = job
                else:
                    event("duplicate unique key")
            assert answer == expected
            return multiple(*(job.id for job in jobs if job.id in self.model))

        def _holder(self, job: Job) -> Job | None:
            """The active job of the model holding `job`'s key, other than `job`."""
            if job.unique_key is None:
                return None
            return next(
                (
                    j
                    for j in self.model.values()
                    if j.id != job.id
                    and (j.topic, j.unique_key) == (job.topic, job.unique_key)
                    and j.status in transitions.ACTIVE_STATUSES
                ),
                None,
            )

        @rule(step=_STEPS)
        def advance_clock(self, step: timedelta) -> None:
            self.now += step

        @rule(
            topics=st.sets(st.sampled_from(_TOPICS), min_size=1).map(sorted),
            limit=st.integers(1, 5),
            caps=st.none() | st.dictionaries(st.sampled_from(_TOPICS), st.integers(0, 2)),
        )
        def claim(self, topics: list[str], limit: int, caps: dict[str, int] | None) -> None:
            if caps is None:
                claimed = self.run(
                    self.store.claim(topics=topics, now=self.now, lease=LEASE, limit=limit)
                )
            else:
                claimed = self.run(
                    self.store.claim(
                        topics=topics, now=self.now, lease=LEASE, limit=limit, caps=caps
                    )
                )
            running: dict[str, int] = {}
            for j in self.model.values():
                if j.status is JobStatus.PROCESSING:
                    running[j.topic] = running.get(j.topic, 0) + 1
            allowances = claim_allowances(
                topics, limit=limit, policies=self.policies, running=running, caps=caps
            )
            due = pick_within_allowances(
                sorted(
                    (
                        j
                        for j in self.model.values()
                        if transitions.claimable(j, self.now) and j.topic in allowances
                    ),
                    key=transitions.claim_order_key,
                ),
                limit=limit,
                allowances=allowances,
            )
            for topic in {j.topic for j in claimed}:
                policy = self.policies.get(topic)
                if policy is not None and policy.max_running is not None:
                    taken = sum(1 for j in claimed if j.topic == topic)
                    assert running.get(topic, 0) + taken <= policy.max_running, "limit exceeded"
                    event("claimed up to a global limit")
            assert [j.id for j in claimed] == [j.id for j in due], "claim picked other jobs"
            for got, before in zip(claimed, due, strict=True):
                assert got.lock_token and got.lock_token not in self.old_tokens
                expected = transitions.claim(
                    before, now=self.now, lease=LEASE, token=got.lock_token
                )
                assert got == expected
                self.model[got.id] = got
                self.old_tokens.append(got.lock_token)
            event(f"claimed {len(claimed)}")

        def _token(self, job: Job, which: str) -> str:
            if which in ("current", "blind") and job.lock_token is not None:
                return job.lock_token
            if which == "stale" and self.old_tokens:
                return self.old_tokens[0]
            return uuid.uuid4().hex

        def _report(self, job_id: str, which: str, outcome: Callable[[Job, str], Job]) -> None:
            job = self.model[job_id]
            token = self._token(job, which)
            held = job.status is JobStatus.PROCESSING and job.lock_token == token
            # What the worker would write if it believed it held the lease ("blind": from
            # a copy read before a client's cancel request):
            base = attrs.evolve(job, status=JobStatus.PROCESSING, lock_token=token)
            if which == "blind":
                base = attrs.evolve(base, cancel_requested=None)
            if base.locked_until is None or base.locked_until < self.now:
                base = attrs.evolve(base, locked_until=self.now)
            after = outcome(base, token)
            change = JobUpdate(
                job=after, expected_status=JobStatus.PROCESSING, expected_lock_token=token
            )
            (applied,) = self.run(self.store.update([change]))
            if held and not transitions.write_allowed(job, change):
                held = False
                event("write blind to a cancel request refused")
            assert applied is held, f"guarded write applied={applied}, lease held={held}"
            if held:
                event("report accepted")
                current = self.model[job_id]
                self.model[job_id] = attrs.evolve(
                    current,
                    **{name: getattr(after, name) for name in MUTABLE_FIELDS},
                )
            else:
                event("stale report refused")

        @rule(
            job_id=job_ids,
            which=st.sampled_from(["current", "current", "blind", "stale", "random"]),
            result=st.none() | _PAYLOADS,
        )
        def complete(self, job_id: str, which: str, result: Any) -> None:
            if job_id not in self.model:
                return
            self._report(
                job_id,
                which,
                lambda j, t: transitions.complete(j, token=t, now=self.now, result=result),
            )

        @rule(
            job_id=job_ids,
            which=st.sampled_from(["current", "current", "blind", "stale", "random"]),
            error=st.sampled_from(["boom", "ValueError: ✗ <b>", ""]),
            trace=st.sampled_from([None, "", 'Traceback:\n  File "x"\nValueError: ✗ "q"']),
        )
        def fail(self, job_id: str, which: str, error: str, trace: str | None) -> None:
            if job_id not in self.model:
                return
            self._report(
                job_id,
                which,
                lambda j, t: transitions.fail(
                    j, token=t, error=error, now=self.now, backoff=_backoff, traceback=trace
                ),
            )
            if self.model[job_id].status is JobStatus.FAILED:
                event("failed for good")

        @rule(
            job_id=job_ids,
            which=st.sampled_from(["current", "current", "blind", "stale", "random"]),
        )
        def renew(self, job_id: str, which: str) -> None:
            if job_id not in self.model:
                return
            job = self.model[job_id]
            token = self._token(job, which)
            held = job.status is JobStatus.PROCESSING and job.lock_token == token
            # What a worker that believed it held the lease would send:
            base = attrs.evolve(job, status=JobStatus.PROCESSING, lock_token=token)
            if base.locked_until is None or base.locked_until < self.now:
                base = attrs.evolve(base, locked_until=self.now)
            after = transitions.renew(
                base, token=token, now=self.now, lease=LEASE, new_token=uuid.uuid4().hex
            )
            change = JobUpdate(
                job=after, expected_status=JobStatus.PROCESSING, expected_lock_token=token
            )
            (got,) = self.run(self.store.renew([change]))
            if not held:
                assert got is None, "a renewal without the lease was applied"
                event("stale renewal refused")
                return
            expected = attrs.evolve(
                job, **{name: getattr(after, name) for name in transitions.RENEW_FIELDS}
            )
            assert got == expected
            assert list(self.run(self.store.renew([change]))) == [expected], "not repeatable"
            self.model[job_id] = expected
            self.old_tokens.append(token)
            event("renewed")

        @rule(
            job_id=job_ids,
            which=st.sampled_from(["current", "current", "blind", "stale", "random"]),
            seconds=st.sampled_from([0, 1, 90]),
        )
        def snooze(self, job_id: str, which: str, seconds: int) -> None:
            if job_id not in self.model:
                return
            delay = timedelta(seconds=seconds)
            self._report(
                job_id,
                which,
                lambda j, t: transitions.snooze(j, token=t, now=self.now, delay=delay),
            )

        @rule(
            job_id=job_ids,
            which=st.sampled_from(["current", "current", "blind", "stale", "random"]),
        )
        def give_up(self, job_id: str, which: str) -> None:
            if job_id not in self.model:
                return
            self._report(
                job_id,
                which,
                lambda j, t: transitions.give_up(j, token=t, error="never", now=self.now),
            )

        @rule(topic=st.sampled_from(_TOPICS), paused=st.booleans())
        def pause(self, topic: str, paused: bool) -> None:
            self.run(self.store.set_paused(topic, paused))
            policy = attrs.evolve(self.policies.get(topic, TopicPolicy(topic=topic)), paused=paused)
            self._keep_policy(policy)

        @rule(topic=st.sampled_from(_TOPICS), max_running=st.none() | st.integers(0, 3))
        def set_limit(self, topic: str, max_running: int | None) -> None:
            self.run(self.store.set_max_running(topic, max_running))
            policy = self.policies.get(topic, TopicPolicy(topic=topic))
            self._keep_policy(attrs.evolve(policy, max_running=max_running))

        def _keep_policy(self, policy: TopicPolicy) -> None:
            if policy.is_default:
                self.policies.pop(policy.topic, None)
            else:
                self.policies[policy.topic] = policy

        @rule()
        def expire_locks(self) -> None:
            found = self.run(self.store.expired(now=self.now, limit=100))
            stale = sorted(
                (j for j in self.model.values() if transitions.lease_expired(j, self.now)),
                key=lambda j: tuple(getattr(j, name) for name in transitions.EXPIRED_ORDER),
            )
            assert list(found) == stale
            updates = [
                transitions.update(j, transitions.expire(j, now=self.now, backoff=_backoff))
                for j in stale
            ]
            assert list(self.run(self.store.update(updates))) == [True] * len(updates)
            for change in updates:
                self.model[change.job.id] = change.job
                if change.job.status is JobStatus.FAILED:
                    event("expired on last attempt -> failed")
            if updates:
                event("rescued expired leases")

        @rule(job_id=job_ids)
        def requeue(self, job_id: str) -> None:
            job = self.model.get(job_id)
            if job is None:
                return
            from jobs_core import CannotRequeue

            try:
                after = transitions.requeue(job, now=self.now)
            except CannotRequeue:
                event("requeue refused")
                wrong = JobUpdate(
                    job=attrs.evolve(job, status=JobStatus.PENDING),
                    expected_status=JobStatus.FAILED,
                    expected_lock_token=None,
                )
                assert list(self.run(self.store.update([wrong]))) == [False]
                return
            holder = self._holder(after)
            if holder is not None:
                from jobs_core import UniqueKeyTaken

                with pytest.raises(UniqueKeyTaken) as caught:
                    self.run(self.store.update([transitions.update(job, after)]))
                taken = caught.value
                assert (taken.job_id, taken.unique_key) == (job.id, job.unique_key)
                assert taken.holder_id in (None, holder.id)
                event("requeue refused: unique key taken")
                return
            assert list(self.run(self.store.update([transitions.update(job, after)]))) == [True]
            self.model[job_id] = after

        @rule(job_id=job_ids)
        def cancel(self, job_id: str) -> None:
            job = self.model.get(job_id)
            if job is None:
                return
            from jobs_core import CannotCancel

            try:
                after = transitions.cancel(job, now=self.now)
            except CannotCancel:
                event("cancel refused")
                return
            assert list(self.run(self.store.update([transitions.update(job, after)]))) == [True]
            self.model[job_id] = after
            event(f"cancel of a {job.status.value} job")

        @rule(job_id=consumes(job_ids))
        def delete(self, job_id: str) -> None:
            job = self.model.get(job_id)
            if job is None:
                return
            deletable = job.status in transitions.DELETABLE_STATUSES
            other = next(s for s in JobStatus if s is not job.status)
            assert self.run(self.store.delete(job_id, expected_status=other)) is False
            if deletable:
                assert self.run(self.store.delete(job_id, expected_status=job.status)) is True
                del self.model[job_id]
                event(f"deleted {job.status.value}")
            else:
                event(f"delete refused ({job.status.value})")

        @rule(
            statuses=st.sets(st.sampled_from(sorted(FINAL_STATUSES)), min_size=1).map(sorted),
            back=st.sampled_from([timedelta(hours=1), LEASE, timedelta(0), -_TICK]),
            limit=st.integers(1, 4),
        )
        def delete_finished(self, statuses: list[JobStatus], back: timedelta, limit: int) -> None:
            before = self.now - back
            gone = sorted(
                (j for j in self.model.values() if j.status in statuses and j.updated < before),
                key=lambda j: (j.updated, j.id),
            )[:limit]
            count = self.run(
                self.store.delete_finished(statuses=statuses, before=before, limit=limit)
            )
            assert count == len(gone), f"deleted {count}, the model says {len(gone)}"
            for job in gone:
                del self.model[job.id]
            event(f"bulk-deleted {len(gone)}" + (" (full)" if len(gone) == limit else ""))

        @rule(
            topic=st.none() | st.sampled_from(_TOPICS),
            status=st.none() | st.sampled_from(list(JobStatus)),
            limit=st.integers(1, 5),
            offset=st.integers(0, 6),
            payloads=st.booleans(),
            max_payload_bytes=st.none() | st.integers(0, 40),
        )
        def list_jobs(
            self,
            *,
            topic: str | None,
            status: JobStatus | None,
            limit: int,
            offset: int,
            payloads: bool,
            max_payload_bytes: int | None,
        ) -> None:
            query = JobQuery(
                topic=topic,
                status=status,
                limit=limit,
                offset=offset,
                payloads=payloads,
                max_payload_bytes=max_payload_bytes,
            )
            page = self.run(self.store.list(query))
            matches = sorted(
                (
                    j
                    for j in self.model.values()
                    if (topic is None or j.topic == topic)
                    and (status is None or j.status == status)
                ),
                key=lambda j: (j.created, j.id),
                reverse=True,
            )
            assert page.total == len(matches)
            assert page.payloads is payloads
            wanted = matches[offset : offset + limit]
            if not payloads:
                wanted = [attrs.evolve(j, **UNREAD_BULKY) for j in wanted]
            items = list(page.items)
            if payloads and max_payload_bytes is not None:
                # How a store measures JSON text may differ (spacing, characters or
                # bytes), so check the shape of the cut rather than where it falls.
                assert items == wanted[: len(items)], "a budgeted page is a prefix"
                assert bool(items) == bool(wanted), "at least one row when any matches"
                assert page.truncated is (len(items) < len(wanted))
                event("list cut by budget" if page.truncated else "list within budget")
            else:
                assert items == wanted
                assert page.truncated is False

        @rule(job_id=job_ids)
        def get(self, job_id: str) -> None:
            from jobs_core import JobNotFound

            if job_id in self.model:
                assert self.run(self.store.get(job_id)) == self.model[job_id]
                return
            try:
                self.run(self.store.get(job_id))
            except JobNotFound:
                return
            raise AssertionError("a deleted job is still there")

        # -- invariants ------------------------------------------------------------

        @invariant()
        def store_agrees_with_model(self) -> None:
            page = self.run(self.store.list(JobQuery(limit=500)))
            assert page.total == len(self.model)
            expected = sorted(self.model.values(), key=lambda j: (j.created, j.id), reverse=True)
            assert list(page.items) == expected
            for job in expected:
                assert (job.status is JobStatus.PROCESSING) == (job.lock_token is not None)
                assert (job.status is JobStatus.PROCESSING) == (job.locked_until is not None)
                assert 0 <= job.retries <= job.max_retries
                assert len(job.errors) <= MAX_ERRORS
                assert job.result is None or job.status is JobStatus.COMPLETED

        @invariant()
        def one_active_job_per_unique_key(self) -> None:
            active = [
                (j.topic, j.unique_key)
                for j in self.model.values()
                if j.unique_key is not None and j.status in transitions.ACTIVE_STATUSES
            ]
            assert len(active) == len(set(active)), active

        @invariant()
        def topics_agree(self) -> None:
            infos = list(self.run(self.store.topics()))
            names = sorted({j.topic for j in self.model.values()} | set(self.policies))
            assert [i.topic for i in infos] == names
            for info in infos:
                policy = self.policies.get(info.topic, TopicPolicy(topic=info.topic))
                assert (info.paused, info.max_running) == (policy.paused, policy.max_running)
                for status in JobStatus:
                    expected = sum(
                        1
                        for j in self.model.values()
                        if j.topic == info.topic and j.status is status
                    )
                    assert info.counts.get(status, 0) == expected, (info.topic, status)

        @invariant()
        def counts_agree(self) -> None:
            counts = self.run(self.store.count_by_status())
            for status in JobStatus:
                expected = sum(1 for j in self.model.values() if j.status is status)
                assert counts.get(status, 0) == expected, status

    StoreMachine.TestCase.settings = budget or settings(
        max_examples=100, stateful_step_count=40, deadline=None
    )
    return StoreMachine


# -- schedules ---------------------------------------------------------------------


def make_schedule(
    name: str = "nightly",
    *,
    topic: str = "t",
    every: timedelta | None = timedelta(seconds=1),
    cron: str | None = None,
    timezone: str = "UTC",
    misfire: Misfire = "latest",
    next_fire_at: datetime | None = None,
    payload: Any = None,
    now: datetime = _T0,
) -> Schedule:
    """A schedule as `Jobs.schedule` would build it (first slot after `now` by default)."""
    schedule = Schedule(
        name=name,
        topic=topic,
        payload={"report": "daily"} if payload is None else payload,
        cron=cron,
        every=None if cron is not None else every,
        timezone=timezone,
        misfire=misfire,
        next_fire_at=now,
        created=now,
        updated=now,
    )
    first = next_slot(schedule, now) if next_fire_at is None else next_fire_at
    return attrs.evolve(schedule, next_fire_at=first)


async def _fire_all(store: ScheduleStore, now: datetime, firers: int = 1) -> None:
    """What `firers` processes' schedule firers do in one tick at `now`, each reading
    the due schedules before any of them fires: they race for the same slots."""
    config = JobsConfig()
    barrier = asyncio.Barrier(firers)
    runs = [
        ScheduleFirer(
            cast(ScheduleStore, _ReadTogether(store, barrier)),
            clock=_FixedClock(now),
            config=config,
            observer=BaseObserver(),
            max_retries=lambda _topic: 3,
        ).run_once(now)
        for _ in range(firers)
    ]
    await asyncio.gather(*runs)


class _ReadTogether:
    """A store whose `due_schedules` answers once every firer sharing `barrier` has read."""

    def __init__(self, store: ScheduleStore, barrier: asyncio.Barrier) -> None:
        self._store = store
        self._barrier = barrier

    async def due_schedules(self, *, now: datetime, limit: int) -> Any:
        due = await self._store.due_schedules(now=now, limit=limit)
        await self._barrier.wait()
        return due

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class _FixedClock:
    """A clock that stands still (the kit passes `now` explicitly)."""

    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    async def sleep(self, delay: timedelta) -> None:
        await asyncio.sleep(0)


async def _slots_of(store: Any, topic: str = "t") -> list[datetime]:
    """The `run_at` (the slot) of every stored job of `topic`, ascending."""
    found: list[datetime] = []
    while True:
        page = await store.list(
            JobQuery(topic=topic, limit=MAX_PAGE_SIZE, offset=len(found), payloads=False)
        )
        found += (job.run_at for job in page.items)
        if not page.items or len(found) >= page.total:
            return sorted(found)


class ScheduleStoreContract:
    """Example tests of the `ScheduleStore` port (a store that also is a `JobStore`).
    Subclass and provide a `store` fixture yielding a fresh, empty store."""

    pytestmark: ClassVar = [pytest.mark.asyncio]

    async def test_a_saved_schedule_reads_back_as_saved(self, store: Any) -> None:
        every = make_schedule("b-every", every=timedelta(minutes=5), payload={"a": [1, "x"]})
        cron = make_schedule("a-cron", cron="0 3 * * *", timezone="Europe/Paris")
        assert await store.save_schedule(every) == every
        assert await store.save_schedule(cron) == cron
        assert await store.get_schedule("b-every") == every
        assert await store.get_schedule("a-cron") == cron
        assert [s.name for s in await store.list_schedules()] == ["a-cron", "b-every"]

    async def test_unknown_schedules_are_not_found(self, store: Any) -> None:
        with pytest.raises(ScheduleNotFound):
            await store.get_schedule("nope")
        with pytest.raises(ScheduleNotFound):
            await store.set_schedule_paused("nope", True, now=_T0)
        assert await store.delete_schedule("nope") is False
        assert await store.list_schedules() == []
        assert await store.due_schedules(now=_T0 + timedelta(days=1), limit=10) == []

    async def test_an_update_keeps_the_next_slot_unless_the_timing_changed(
        self, store: Any
    ) -> None:
        """Same timing: `next_fire_at`, `created`, the pause and the last firing stay;
        the definition and `updated` change. A new timing takes the given next slot."""
        first = make_schedule(every=timedelta(seconds=10))
        await store.save_schedule(first)
        await store.set_schedule_paused(first.name, True, now=_T0)
        later = _T0 + timedelta(minutes=1)
        same = make_schedule(every=timedelta(seconds=10), payload={"v": 2}, now=later)
        stored = await store.save_schedule(same)
        assert stored.next_fire_at == first.next_fire_at
        assert (stored.created, stored.updated, stored.paused) == (_T0, later, True)
        assert stored.payload == {"v": 2}
        assert await store.get_schedule(first.name) == stored
        changed = make_schedule(every=timedelta(seconds=7), now=later)
        again = await store.save_schedule(changed)
        assert again.next_fire_at == changed.next_fire_at != first.next_fire_at
        assert again.every == timedelta(seconds=7)
        assert again.paused is True

    async def test_delete_removes_the_schedule_not_its_jobs(self, store: Any) -> None:
        schedule = make_schedule()
        await store.save_schedule(schedule)
        await _fire_all(store, schedule.next_fire_at)
        assert await store.delete_schedule(schedule.name) is True
        assert await store.list_schedules() == []
        assert len(await _slots_of(store)) == 1

    async def test_due_schedules_are_the_unpaused_ones_whose_slot_came(self, store: Any) -> None:
        early = make_schedule("early", next_fire_at=_T0 + timedelta(seconds=1))
        late = make_schedule("late", next_fire_at=_T0 + timedelta(seconds=5))
        held = make_schedule("held", next_fire_at=_T0)
        for schedule in (late, early, held):
            await store.save_schedule(schedule)
        await store.set_schedule_paused("held", True, now=_T0)
        at = _T0 + timedelta(seconds=5)
        assert [s.name for s in await store.due_schedules(now=at, limit=10)] == ["early", "late"]
        assert [s.name for s in await store.due_schedules(now=at, limit=1)] == ["early"]
        assert await store.due_schedules(now=_T0, limit=10) == []
        resumed = await store.set_schedule_paused("held", False, now=at, next_fire_at=at)
        assert (resumed.paused, resumed.next_fire_at, resumed.updated) == (False, at, at)
        assert "held" in [s.name for s in await store.due_schedules(now=at, limit=10)]

    async def test_fire_moves_the_next_slot_and_stores_the_jobs_in_one_step(
        self, store: Any
    ) -> None:
        schedule = make_schedule()
        await store.save_schedule(schedule)
        slot = schedule.next_fire_at
        jobs = slot_jobs(schedule, [slot], now=slot, max_retries=3)
        following = slot + timedelta(seconds=1)
        assert await store.fire_schedule(
            schedule.name, expected_next_fire_at=slot, next_fire_at=following, jobs=jobs
        )
        stored = await store.get_schedule(schedule.name)
        assert (stored.next_fire_at, stored.last_fired_at, stored.last_job_id) == (
            following,
            slot,
            jobs[0].id,
        )
        assert await store.get(jobs[0].id) == jobs[0]
        # A firer that read the old next slot loses and writes nothing.
        late = slot_jobs(schedule, [slot], now=slot, max_retries=3)
        assert not await store.fire_schedule(
            schedule.name, expected_next_fire_at=slot, next_fire_at=following, jobs=late
        )
        assert await _slots_of(store) == [slot]

    async def test_a_slot_whose_key_is_held_is_not_stored_twice(self, store: Any) -> None:
        """Belt and braces under the compare-and-set: a firing that carries a slot job
        already stored and active (its `slot_key` held) still moves the schedule on and
        stores the other slots, not a second job for that slot."""
        schedule = make_schedule()
        await store.save_schedule(schedule)
        slot = schedule.next_fire_at
        (held,) = slot_jobs(schedule, [slot], now=slot, max_retries=3)
        await store.insert([held])
        nxt = slot + timedelta(seconds=1)
        jobs = slot_jobs(schedule, [slot, nxt], now=slot, max_retries=3)
        assert await store.fire_schedule(
            schedule.name,
            expected_next_fire_at=slot,
            next_fire_at=nxt + timedelta(seconds=1),
            jobs=jobs,
        )
        assert sorted(await _slots_of(store)) == [slot, nxt]
        assert await store.get(held.id) == held

    async def test_competing_fires_of_one_slot_store_it_once(self, store: Any) -> None:
        schedule = make_schedule()
        await store.save_schedule(schedule)
        slot = schedule.next_fire_at
        batches = [slot_jobs(schedule, [slot], now=slot, max_retries=3) for _ in range(5)]
        won = await asyncio.gather(
            *(
                store.fire_schedule(
                    schedule.name,
                    expected_next_fire_at=slot,
                    next_fire_at=slot + timedelta(seconds=1),
                    jobs=jobs,
                )
                for jobs in batches
            )
        )
        assert won.count(True) == 1
        winner = batches[won.index(True)][0]
        assert [j.id for j in (await store.list(JobQuery(limit=10))).items] == [winner.id]

    async def test_a_paused_or_deleted_schedule_does_not_fire(self, store: Any) -> None:
        schedule = make_schedule()
        await store.save_schedule(schedule)
        slot = schedule.next_fire_at
        await store.set_schedule_paused(schedule.name, True, now=_T0)
        jobs = slot_jobs(schedule, [slot], now=slot, max_retries=3)
        assert not await store.fire_schedule(
            schedule.name, expected_next_fire_at=slot, next_fire_at=slot, jobs=jobs
        )
        await _fire_all(store, slot + timedelta(minutes=1))
        await store.delete_schedule(schedule.name)
        assert not await store.fire_schedule(
            schedule.name, expected_next_fire_at=slot, next_fire_at=slot, jobs=jobs
        )
        assert await _slots_of(store) == []

    @pytest.mark.parametrize(("misfire", "fired"), [("latest", 1), ("all", 10), ("skip", 0)])
    async def test_misfire_decides_the_slots_missed_while_nothing_ran(
        self, store: Any, misfire: Misfire, fired: int
    ) -> None:
        """Ten one-minute slots passed unfired (each older than `MISFIRE_GRACE`)."""
        schedule = make_schedule(every=timedelta(minutes=1), misfire=misfire)
        await store.save_schedule(schedule)
        first = schedule.next_fire_at
        now = first + timedelta(minutes=9, seconds=45)
        await _fire_all(store, now, firers=3)
        slots = await _slots_of(store)
        expected = [first + timedelta(minutes=i) for i in range(10)][10 - fired :]
        assert slots == expected
        stored = await store.get_schedule(schedule.name)
        assert stored.next_fire_at == first + timedelta(minutes=10)
        assert stored.last_fired_at == (expected[-1] if expected else None)

    async def test_every_slot_fires_once_however_many_firers_race(self, store: Any) -> None:
        """Three firers per tick, ticks at uneven times for a minute of 1 s slots: one
        job per slot passed, none twice, none missing."""
        schedule = make_schedule(every=timedelta(seconds=1), misfire="all")
        await store.save_schedule(schedule)
        start = schedule.next_fire_at
        now = start
        for step in [0.3, 0.9, 1.7, 0.1, 3.2, 0.0, 2.5, 1.0] * 6:
            now += timedelta(seconds=step)
            await _fire_all(store, now, firers=3)
        passed = int((now - start).total_seconds()) + 1
        assert await _slots_of(store) == [start + timedelta(seconds=i) for i in range(passed)]


_SCHEDULE_STEPS = st.sampled_from([0.0, 0.3, 0.999, 1.0, 2.5, 7.0, 29.0, 31.0, 45.0]).map(
    lambda s: timedelta(seconds=s)
)


def make_schedule_machine(
    open_store: Callable[[], Any],
    *,
    budget: settings | None = None,
) -> type[RuleBasedStateMachine]:
    """A model-checking machine for the `ScheduleStore` port: one `every=1s` schedule
    per misfire policy, a clock moved by random steps, firings by 1 to 4 racing firers,
    pauses and resumes. After every step the jobs each schedule made are exactly the
    model's slots: on-time slots each once, of the missed ones what `misfire` keeps,
    none while paused, none twice. `open_store` is as for `make_state_machine`."""

    every = timedelta(seconds=1)
    names = ("latest", "all", "skip")

    class ScheduleMachine(_StoreOnItsOwnLoop):
        open: ClassVar = staticmethod(open_store)

        def __init__(self) -> None:
            super().__init__()
            self.now = _T0 + timedelta(milliseconds=250)
            self.next: dict[str, datetime] = {}
            self.paused: dict[str, bool] = {}
            self.slots: dict[str, list[datetime]] = {}

        @initialize()
        def create(self) -> None:
            for name in names:
                misfire: Misfire = name  # type: ignore[assignment]
                schedule = make_schedule(
                    name, topic=name, every=every, misfire=misfire, now=self.now
                )
                self.run(self.store.save_schedule(schedule))
                self.next[name], self.paused[name], self.slots[name] = (
                    schedule.next_fire_at,
                    False,
                    [],
                )

        @rule(step=_SCHEDULE_STEPS)
        def advance_clock(self, step: timedelta) -> None:
            self.now += step

        @rule(firers=st.integers(1, 4))
        def fire(self, firers: int) -> None:
            self.run(_fire_all(self.store, self.now, firers))
            for name in names:
                if self.paused[name] or self.next[name] > self.now:
                    continue
                passed = []
                slot = self.next[name]
                while slot <= self.now:
                    passed.append(slot)
                    slot += every
                on_time = [s for s in passed if self.now - s <= MISFIRE_GRACE]
                missed = [s for s in passed if self.now - s > MISFIRE_GRACE]
                kept = {"all": missed, "latest": missed[-1:], "skip": []}[name]
                self.slots[name] += (kept + on_time)[-MAX_SLOTS_PER_FIRE:]
                self.next[name] = slot

        @rule(name=st.sampled_from(names), paused=st.booleans())
        def pause_or_resume(self, name: str, paused: bool) -> None:
            if paused:
                self.run(self.store.set_schedule_paused(name, True, now=self.now))
            elif self.paused[name]:  # what `Jobs.resume_schedule` does
                stored = self.run(self.store.get_schedule(name))
                following = next_slot(stored, self.now)
                self.run(
                    self.store.set_schedule_paused(
                        name, False, now=self.now, next_fire_at=following
                    )
                )
                self.next[name] = following
            self.paused[name] = paused

        @invariant()
        def each_slot_fired_once_as_misfire_says(self) -> None:
            for name in names:
                assert self.run(_slots_of(self.store, name)) == self.slots[name], name
                stored = self.run(self.store.get_schedule(name))
                assert stored.next_fire_at == self.next[name], name
                assert stored.paused is self.paused[name], name

    ScheduleMachine.TestCase.settings = budget or settings(
        max_examples=50, stateful_step_count=30, deadline=None
    )
    return ScheduleMachine
