"""The lifecycle table and its pure functions: each legal step, and each illegal one."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs_core import (
    COMPLETE_FIELDS,
    LOCK_EXPIRED,
    MUTABLE_FIELDS,
    AttemptError,
    CannotCancel,
    CannotDelete,
    CannotRequeue,
    IllegalTransition,
    Job,
    JobStatus,
    LockLost,
    exponential_backoff,
)
from jobs_core import _transitions as tr
from tests.core.conftest import T0

LEASE = timedelta(minutes=5)


def backoff(n: int) -> timedelta:
    return timedelta(seconds=10 * (n + 1))


def pending(max_retries: int = 3) -> Job:
    return tr.new_job(
        job_id="0190a000-0000-7000-8000-000000000001",
        topic="t",
        payload={"a": 1},
        run_at=T0,
        max_retries=max_retries,
        now=T0,
    )


def claimed(max_retries: int = 3, token: str = "tok") -> Job:
    return tr.claim(pending(max_retries), now=T0, lease=LEASE, token=token)


def test_table_lists_every_status() -> None:
    """One row per status; completed is final."""
    assert set(tr.TRANSITIONS) == set(JobStatus)
    assert tr.TRANSITIONS[JobStatus.COMPLETED] == {}
    assert all(isinstance(event, tr.JobEvent) for row in tr.TRANSITIONS.values() for event in row)


def test_claim_leases_a_due_job() -> None:
    """The whole job after a claim: processing, leased, token set, nothing else changed."""
    later = T0 + timedelta(seconds=1)
    job = tr.claim(pending(), now=later, lease=LEASE, token="tok")
    assert job == attrs.evolve(
        pending(),
        status=JobStatus.PROCESSING,
        locked_until=later + LEASE,
        lock_token="tok",
        updated=later,
    )


def test_claim_refuses_a_job_not_yet_due() -> None:
    """A future `run_at` is not claimable."""
    with pytest.raises(IllegalTransition, match="due only at"):
        tr.claim(pending(), now=T0 - timedelta(microseconds=1), lease=LEASE, token="x")


@pytest.mark.parametrize("status", [JobStatus.PROCESSING, JobStatus.COMPLETED, JobStatus.FAILED])
def test_claim_refuses_non_pending(status: JobStatus) -> None:
    """Only pending jobs can be claimed; the message names event and state."""
    job = attrs.evolve(pending(), status=status)
    with pytest.raises(IllegalTransition, match=f"cannot claim .* it is {status.value}"):
        tr.claim(job, now=T0, lease=LEASE, token="x")


def test_complete_ends_the_job_and_clears_the_lease() -> None:
    """Completed, lock cleared, retries and error untouched."""
    job = claimed()
    done = tr.complete(job, token="tok", now=T0 + timedelta(seconds=2))
    assert done == attrs.evolve(
        job,
        status=JobStatus.COMPLETED,
        locked_until=None,
        lock_token=None,
        updated=T0 + timedelta(seconds=2),
    )


@given(
    result=st.none() | st.integers(),
    asked=st.booleans(),
    seconds=st.integers(min_value=0, max_value=299),
)
def test_a_completion_changes_only_the_complete_fields(
    result: int | None, asked: bool, seconds: int
) -> None:
    """Stores may write a completion as `COMPLETE_FIELDS` alone: every other field of the
    completed job is the claimed job's, and the request fields are among them."""
    job = claimed()
    if asked:
        job = attrs.evolve(job, cancel_requested=T0)
    done = tr.complete(job, token="tok", now=T0 + timedelta(seconds=seconds), result=result)
    changed = {name for name in attrs.fields_dict(Job) if getattr(done, name) != getattr(job, name)}
    assert changed <= set(COMPLETE_FIELDS)
    assert set(tr.REQUEST_FIELDS) <= set(COMPLETE_FIELDS) <= set(MUTABLE_FIELDS)


def test_complete_exactly_at_lease_end_is_accepted_one_microsecond_later_is_not() -> None:
    """Boundary pinned: a lease is expired iff `locked_until < now`."""
    job = claimed()
    assert job.locked_until is not None
    assert tr.complete(job, token="tok", now=job.locked_until).status is JobStatus.COMPLETED
    with pytest.raises(LockLost, match="expired"):
        tr.complete(job, token="tok", now=job.locked_until + timedelta(microseconds=1))


@pytest.mark.parametrize("report", ["complete", "fail", "release"])
def test_reports_with_a_stale_token_raise_lock_lost(report: str) -> None:
    """Fencing: another claim's token is refused by every report."""
    job = claimed(token="new")
    calls = {
        "complete": lambda: tr.complete(job, token="old", now=T0),
        "fail": lambda: tr.fail(job, token="old", error="x", now=T0, backoff=backoff),
        "release": lambda: tr.release(job, token="old", now=T0),
    }
    with pytest.raises(LockLost, match="another claim"):
        calls[report]()


@pytest.mark.parametrize("status", [JobStatus.PENDING, JobStatus.COMPLETED, JobStatus.FAILED])
def test_reports_on_a_job_not_processing_raise_lock_lost(status: JobStatus) -> None:
    """A report on a job that is no longer processing is refused."""
    job = attrs.evolve(claimed(), status=status)
    with pytest.raises(LockLost, match=f"the job is {status.value}"):
        tr.complete(job, token="tok", now=T0)


def test_fail_with_retries_left_schedules_a_retry() -> None:
    """Back to pending, retries + 1, run_at after the backoff of the retry number."""
    job = claimed(max_retries=2)
    now = T0 + timedelta(seconds=3)
    after = tr.fail(job, token="tok", error="boom", now=now, backoff=backoff)
    assert after == attrs.evolve(
        job,
        status=JobStatus.PENDING,
        retries=1,
        run_at=now + backoff(0),
        locked_until=None,
        lock_token=None,
        last_error="boom",
        errors=(AttemptError(attempt=1, at=now, error="boom"),),
        updated=now,
    )


def test_fail_on_the_last_run_ends_failed() -> None:
    """`max_retries=0` means one run: the first failure is final."""
    job = claimed(max_retries=0)
    after = tr.fail(job, token="tok", error="boom", now=T0, backoff=backoff)
    assert after == attrs.evolve(
        job,
        status=JobStatus.FAILED,
        locked_until=None,
        lock_token=None,
        last_error="boom",
        errors=(AttemptError(attempt=1, at=T0, error="boom"),),
        updated=T0,
    )


def test_a_job_runs_at_most_one_plus_max_retries_times() -> None:
    """Fail every attempt: exactly 1 + max_retries claims happen."""
    job, runs, now = pending(max_retries=3), 0, T0
    while job.status is JobStatus.PENDING:
        now = max(now, job.run_at)
        job = tr.claim(job, now=now, lease=LEASE, token=f"t{runs}")
        runs += 1
        job = tr.fail(job, token=f"t{runs - 1}", error="e", now=now, backoff=backoff)
    assert (runs, job.status, job.retries) == (4, JobStatus.FAILED, 3)


def test_expire_counts_as_a_failed_attempt() -> None:
    """An expired lease is a failure with the error 'lock expired'; on the last run, failed."""
    job = claimed(max_retries=1)
    assert job.locked_until is not None
    late = job.locked_until + timedelta(microseconds=1)
    retry = tr.expire(job, now=late, backoff=backoff)
    assert (retry.status, retry.retries, retry.last_error) == (JobStatus.PENDING, 1, LOCK_EXPIRED)
    again = tr.claim(retry, now=retry.run_at, lease=LEASE, token="t2")
    assert again.locked_until is not None
    final = tr.expire(again, now=again.locked_until + LEASE, backoff=backoff)
    assert (final.status, final.retries, final.last_error) == (JobStatus.FAILED, 1, LOCK_EXPIRED)


def test_expire_refuses_a_valid_lease() -> None:
    """A lease that has not run out cannot be expired."""
    job = claimed()
    assert job.locked_until is not None
    with pytest.raises(IllegalTransition):
        tr.expire(job, now=job.locked_until, backoff=backoff)


def test_release_hands_the_job_back_without_counting_an_attempt() -> None:
    """Graceful stop: pending, due now, retries unchanged."""
    job = claimed()
    after = tr.release(job, token="tok", now=T0 + timedelta(seconds=1))
    assert (after.status, after.retries, after.run_at, after.lock_token) == (
        JobStatus.PENDING,
        0,
        T0 + timedelta(seconds=1),
        None,
    )


def test_every_move_copies_the_fields_it_does_not_change() -> None:
    """The compiled moves build each job in one constructor call: every field outside
    `MUTABLE_FIELDS` is copied, and so is every mutable field the move does not name."""
    job = attrs.evolve(claimed(), retries=1, last_error="before", priority=-7)
    for status, row in tr.TRANSITIONS.items():
        for event, move in row.items():
            if move.target is None:
                continue
            source = attrs.evolve(job, status=status)
            after = tr._APPLY[status][event](
                source, T0, "new", LEASE, backoff=backoff, error="e", trace="t", result=[1]
            )
            named = {field for field, _ in move.effects} | {"status", "updated"}
            for field in attrs.fields(Job):
                if field.name not in named:
                    assert getattr(after, field.name) == getattr(source, field.name), (
                        f"{status} -{event}-> changed {field.name}"
                    )
            assert (after.status, after.updated) == (move.target, T0)


def test_every_mutable_field_has_exactly_one_rule() -> None:
    """A mutable field without a rule could not be changed by any move, and a rule for a
    field that is not mutable would be written by no store."""
    assert set(tr.FIELD_RULES) == set(MUTABLE_FIELDS)


def test_a_move_naming_an_unknown_effect_is_refused_at_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A typo in the table fails loudly when the module loads, not on a worker."""
    bad = {
        **tr.TRANSITIONS,
        JobStatus.FAILED: {tr.REQUEUE: tr.move(JobStatus.PENDING, retries="zero")},
    }
    monkeypatch.setattr(tr, "TRANSITIONS", bad)
    with pytest.raises(TypeError, match="no effect 'zero' on 'retries'"):
        tr._check_rules()


def test_renew_extends_the_lease_under_a_new_token() -> None:
    """Still processing, leased until `now + lease`, the new token; nothing else changed."""
    job = claimed()
    now = T0 + timedelta(minutes=4)
    renewed = tr.renew(job, token="tok", now=now, lease=LEASE, new_token="tok2")
    assert renewed == attrs.evolve(job, locked_until=now + LEASE, lock_token="tok2", updated=now)
    assert tr.update(job, renewed).expected_lock_token == "tok"


def test_renew_refuses_a_stale_token_or_an_expired_lease() -> None:
    """Only the live lease's holder may renew it: fencing holds for renewals too."""
    job = claimed()
    assert job.locked_until is not None
    with pytest.raises(LockLost, match="another claim"):
        tr.renew(job, token="old", now=T0, lease=LEASE, new_token="x")
    late = job.locked_until + timedelta(microseconds=1)
    with pytest.raises(LockLost, match="expired"):
        tr.renew(job, token="tok", now=late, lease=LEASE, new_token="x")
    with pytest.raises(LockLost, match="the job is pending"):
        tr.renew(pending(), token="tok", now=T0, lease=LEASE, new_token="x")


def test_the_status_sets_are_read_off_the_table() -> None:
    """The sets stores and the API use, as the table defines them today."""
    P, R, C, F, X = (
        JobStatus.PENDING,
        JobStatus.PROCESSING,
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
    )
    sets = {
        "claimable": tr.CLAIMABLE_STATUSES,
        "leased": tr.LEASED_STATUSES,
        "deletable": tr.DELETABLE_STATUSES,
        "requeueable": tr.REQUEUEABLE_STATUSES,
        "cancellable": tr.CANCELLABLE_STATUSES,
        "final": tr.FINAL_STATUSES,
    }
    assert sets == {
        "claimable": {P},
        "leased": {R},
        "deletable": {P, F, X},
        "requeueable": {F, X},
        "cancellable": {P, R},
        "final": {C, F, X},
    }
    assert tr.GIVEN_UP_STATUS is JobStatus.FAILED
    assert tr.actions(JobStatus.FAILED) == ("requeue", "delete")
    assert tr.actions(JobStatus.PENDING) == ("cancel", "delete")
    assert tr.actions(JobStatus.PROCESSING) == ("cancel",)
    assert tr.actions(JobStatus.COMPLETED) == ()


def test_a_naive_time_is_still_refused_by_the_transitions() -> None:
    """The field-by-field copies keep the `Job` validators: a naive `now` is an error."""
    naive = T0.replace(tzinfo=None)
    with pytest.raises(ValueError, match="timezone-aware"):
        tr.requeue(attrs.evolve(pending(), status=JobStatus.FAILED), now=naive)


def test_requeue_resets_a_failed_job() -> None:
    """Failed -> pending, retries 0, due now, error and lock cleared."""
    failed = tr.fail(claimed(max_retries=0), token="tok", error="x", now=T0, backoff=backoff)
    now = T0 + timedelta(hours=1)
    assert tr.requeue(failed, now=now) == attrs.evolve(
        failed, status=JobStatus.PENDING, retries=0, run_at=now, last_error=None, updated=now
    )


@pytest.mark.parametrize("status", [JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.COMPLETED])
def test_requeue_refuses_anything_but_failed_or_cancelled(status: JobStatus) -> None:
    """CannotRequeue names the job, the event and the state."""
    job = attrs.evolve(claimed(), status=status)
    with pytest.raises(
        CannotRequeue, match=f"cannot requeue job .* it is {status.value}; only cancelled or failed"
    ):
        tr.requeue(job, now=T0)


@pytest.mark.parametrize(
    ("status", "ok"),
    [
        (JobStatus.PENDING, True),
        (JobStatus.FAILED, True),
        (JobStatus.CANCELLED, True),
        (JobStatus.PROCESSING, False),
        (JobStatus.COMPLETED, False),
    ],
)
def test_delete_only_pending_failed_or_cancelled(status: JobStatus, ok: bool) -> None:
    """The table decides which jobs can be deleted."""
    job = attrs.evolve(pending(), status=status)
    if ok:
        tr.check_delete(job)
    else:
        with pytest.raises(CannotDelete, match="only cancelled, failed or pending"):
            tr.check_delete(job)


def test_long_errors_are_truncated() -> None:
    """`last_error` is bounded so a huge traceback cannot bloat a row."""
    after = tr.fail(claimed(), token="tok", error="x" * 100_000, now=T0, backoff=backoff)
    assert after.last_error is not None
    assert len(after.last_error) <= tr.MAX_ERROR_LENGTH + 20


def test_update_guards_on_what_the_transition_saw() -> None:
    """The guarded write carries the before-status and before-token."""
    job = claimed()
    change = tr.update(job, tr.complete(job, token="tok", now=T0))
    assert (change.expected_status, change.expected_lock_token) == (JobStatus.PROCESSING, "tok")


@given(st.integers(0, 100))
def test_default_backoff_is_positive_and_capped(retry: int) -> None:
    """0 < backoff(n) <= 1 h for every retry number."""
    delay = exponential_backoff()(retry)
    assert timedelta(0) < delay <= timedelta(hours=1)


def test_default_backoff_doubles_within_jitter() -> None:
    """1 s, 2 s, 4 s, ... each within ±10 %."""
    delay = exponential_backoff()
    for n in range(10):
        assert 0.9 * 2**n <= delay(n).total_seconds() <= 1.1 * 2**n


def test_cancelling_a_pending_job_ends_it_at_once() -> None:
    """Pending -> cancelled; nothing else changes but `updated`."""
    job = pending()
    now = T0 + timedelta(seconds=1)
    assert tr.cancel(job, now=now) == attrs.evolve(job, status=JobStatus.CANCELLED, updated=now)


def test_cancelling_a_running_job_is_a_request_that_keeps_the_lease() -> None:
    """Processing stays processing, under the same lease; the first request's time stays."""
    job = claimed()
    first = tr.cancel(job, now=T0 + timedelta(seconds=1))
    assert first == attrs.evolve(
        job, cancel_requested=T0 + timedelta(seconds=1), updated=T0 + timedelta(seconds=1)
    )
    again = tr.cancel(first, now=T0 + timedelta(seconds=2))
    assert again.cancel_requested == T0 + timedelta(seconds=1)


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_a_final_job_cannot_be_cancelled(status: JobStatus) -> None:
    with pytest.raises(CannotCancel, match=f"it is {status.value}; only pending or processing"):
        tr.cancel(attrs.evolve(pending(), status=status), now=T0)


def test_a_job_asked_to_cancel_is_never_retried() -> None:
    """Whatever ends its run (the worker's abort, a failure, an expired lease, a stop),
    a job with a cancel request ends cancelled with its lease cleared."""
    asked = tr.cancel(claimed(max_retries=3), now=T0)
    assert asked.locked_until is not None
    ends = {
        "abort": tr.abort(asked, token="tok", now=T0),
        "fail": tr.fail(asked, token="tok", error="boom", now=T0, backoff=backoff),
        "expire": tr.expire(asked, now=asked.locked_until + LEASE, backoff=backoff),
        "release": tr.release(asked, token="tok", now=T0),
    }
    for name, after in ends.items():
        assert (after.status, after.lock_token, after.retries) == (
            JobStatus.CANCELLED,
            None,
            0,
        ), name
    assert ends["abort"].last_error == "cancelled"
    assert ends["fail"].last_error == "cancelled (boom)"
    assert tr.complete(asked, token="tok", now=T0).status is JobStatus.COMPLETED


def test_requeue_of_a_cancelled_job_clears_the_request() -> None:
    stopped = tr.abort(tr.cancel(claimed(), now=T0), token="tok", now=T0)
    again = tr.requeue(stopped, now=T0 + timedelta(hours=1))
    assert (again.status, again.cancel_requested, again.last_error, again.retries) == (
        JobStatus.PENDING,
        None,
        None,
        0,
    )


def test_the_claim_order_is_priority_descending_then_run_at_then_id() -> None:
    assert tr.CLAIM_ORDER == ("-priority", "run_at", "id")
    base = pending()
    jobs = [
        attrs.evolve(base, id="b", priority=0, run_at=T0),
        attrs.evolve(base, id="a", priority=0, run_at=T0),
        attrs.evolve(base, id="c", priority=0, run_at=T0 - timedelta(seconds=1)),
        attrs.evolve(base, id="z", priority=5, run_at=T0 + timedelta(hours=1)),
        attrs.evolve(base, id="y", priority=-100, run_at=T0 - timedelta(days=1)),
        attrs.evolve(base, id="x", priority=100, run_at=T0),
    ]
    ordered = sorted(jobs, key=tr.claim_order_key)
    assert [job.id for job in ordered] == ["x", "z", "c", "a", "b", "y"]
    assert tr.claim_order_key(jobs[5]) == (-100, T0, "x")


def test_an_order_key_follows_any_order_of_fields() -> None:
    """Ascending or (INT fields) descending, one field or several."""
    base = pending()
    jobs = [attrs.evolve(base, id=i, retries=r) for i, r in (("a", 2), ("b", 1), ("c", 2))]
    by_retries_down = tr.order_key(("-retries", "id"))
    assert [job.id for job in sorted(jobs, key=by_retries_down)] == ["a", "c", "b"]
    assert [job.id for job in sorted(jobs, key=tr.order_key(("retries",)))] == ["b", "a", "c"]
    assert tr.order_key(["-retries"])(jobs[0]) == (-2,)
    assert tr.order_key(["id"])(jobs[0]) == ("a",)


@pytest.mark.parametrize(
    ("order", "message"),
    [
        (("-run_at", "id"), "only an INT field can be sorted descending"),
        (("-id",), "only an INT field can be sorted descending"),
        (("nope", "id"), "is not an order of Job fields"),
        (("--priority",), "is not an order of Job fields"),
        ((), "is not an order of Job fields"),
    ],
)
def test_an_order_key_refuses_what_it_cannot_sort(order: tuple[str, ...], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        tr.order_key(order)
