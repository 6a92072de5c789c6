"""The lifecycle table and its pure functions: each legal step, and each illegal one."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs_core import (
    LOCK_EXPIRED,
    MUTABLE_FIELDS,
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


def test_moves_out_of_processing_copy_every_field_they_do_not_set() -> None:
    """The transitions build jobs field by field: every field outside `MUTABLE_FIELDS` must
    be one they copy, so a field added to `Job` is not silently reset."""
    copied = {"id", "topic", "payload", "max_retries", "created"}
    assert {field.name for field in attrs.fields(Job)} == copied | set(MUTABLE_FIELDS)
    job = attrs.evolve(claimed(), retries=1, last_error="before")
    now = T0 + timedelta(seconds=1)
    assert tr.release(job, token="tok", now=now) == attrs.evolve(
        job, status=JobStatus.PENDING, run_at=now, locked_until=None, lock_token=None, updated=now
    )
    assert tr.complete(job, token="tok", now=now) == attrs.evolve(
        job, status=JobStatus.COMPLETED, locked_until=None, lock_token=None, updated=now
    )


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
def test_requeue_refuses_anything_but_failed(status: JobStatus) -> None:
    """CannotRequeue names the job, the event and the state."""
    job = attrs.evolve(claimed(), status=status)
    with pytest.raises(
        CannotRequeue, match=f"cannot requeue job .* it is {status.value}; only failed"
    ):
        tr.requeue(job, now=T0)


@pytest.mark.parametrize(
    ("status", "ok"),
    [
        (JobStatus.PENDING, True),
        (JobStatus.FAILED, True),
        (JobStatus.PROCESSING, False),
        (JobStatus.COMPLETED, False),
    ],
)
def test_delete_only_pending_or_failed(status: JobStatus, ok: bool) -> None:
    """The table decides which jobs can be deleted."""
    job = attrs.evolve(pending(), status=status)
    if ok:
        tr.check_delete(job)
    else:
        with pytest.raises(CannotDelete, match="only failed or pending"):
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
