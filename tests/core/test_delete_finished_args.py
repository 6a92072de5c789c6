"""`check_delete_finished`: the one check of `delete_finished`'s arguments every store runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from jobs_core import FINAL_STATUSES, InvalidOptions, JobStatus, check_delete_finished

_WHEN = datetime(2030, 1, 1, tzinfo=UTC)


def test_statuses_come_back_sorted_once_each_and_before_as_utc() -> None:
    """Repeats and plain status strings are accepted; `before` is converted to UTC."""
    plus_two = _WHEN.astimezone(timezone(timedelta(hours=2)))
    statuses, before, limit = check_delete_finished(
        ["failed", JobStatus.COMPLETED, JobStatus.FAILED], plus_two, 7
    )
    assert statuses == (JobStatus.COMPLETED, JobStatus.FAILED)
    assert all(type(status) is JobStatus for status in statuses)
    assert before == _WHEN
    assert before.tzinfo is UTC
    assert limit == 7
    assert check_delete_finished(FINAL_STATUSES, _WHEN, 1)[0] == (
        JobStatus.CANCELLED,
        *statuses,
    )


@pytest.mark.parametrize(
    ("statuses", "before", "limit", "message"),
    [
        ([JobStatus.PENDING], _WHEN, 1, "statuses must be final (cancelled, completed, failed)"),
        (["processing"], _WHEN, 1, "got 'processing'"),
        (["done"], _WHEN, 1, "got 'done'"),
        ([None], _WHEN, 1, "got None"),
        ([], _WHEN, 1, "at least one of cancelled, completed, failed"),
        (JobStatus.FAILED, _WHEN, 1, "a collection of statuses"),
        ([JobStatus.FAILED], _WHEN, 0, "limit must be an integer of at least 1, got 0"),
        ([JobStatus.FAILED], _WHEN, True, "got True"),
        ([JobStatus.FAILED], _WHEN, 2.0, "got 2.0"),
        ([JobStatus.FAILED], _WHEN.replace(tzinfo=None), 1, "before"),
        ([JobStatus.FAILED], "2030-01-01", 1, "before must be a datetime"),
    ],
)
def test_anything_else_is_invalid_options(
    statuses: object, before: object, limit: object, message: str
) -> None:
    with pytest.raises(InvalidOptions) as raised:
        check_delete_finished(statuses, before, limit)  # type: ignore[arg-type]
    assert message in str(raised.value)
