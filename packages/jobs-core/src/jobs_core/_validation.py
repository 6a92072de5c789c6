"""Checks of caller input that are the same on every store."""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import UTC, datetime

from jobs_core._errors import InvalidOptions, InvalidTopic
from jobs_core._model import (
    MAX_PRIORITY,
    MAX_UNIQUE_KEY_LENGTH,
    MIN_PRIORITY,
    JobStatus,
    time_problem,
)
from jobs_core._transitions import FINAL_STATUSES

MAX_TOPIC_LENGTH = 255
#: Largest `limit` of one `list()` page.
MAX_PAGE_SIZE = 500
_TOPIC = re.compile(r"[A-Za-z0-9._:/\-]+")


def check_topic(topic: object) -> str:
    """Return `topic` if it is 1-255 characters of letters, digits and `. _ : - /`."""
    if not isinstance(topic, str):
        raise InvalidTopic(f"topic must be a string, got {type(topic).__name__}")
    if not topic:
        raise InvalidTopic("topic must not be empty")
    if len(topic) > MAX_TOPIC_LENGTH:
        raise InvalidTopic(f"topic is {len(topic)} characters; the limit is {MAX_TOPIC_LENGTH}")
    if not _TOPIC.fullmatch(topic):
        raise InvalidTopic(
            f"topic {topic[:80]!r} may only contain letters, digits and the characters . _ : - /"
        )
    return topic


def check_time(value: object, name: str) -> datetime:
    """Return `value` as UTC if it is a timezone-aware datetime both stores can hold.

    The range is `EARLIEST_TIME`..`LATEST_TIME` (see `_model`): outside it PostgreSQL
    would store `-infinity`/`infinity`, which reads back as no valid time at all.
    """
    if not isinstance(value, datetime):
        raise InvalidOptions(f"{name} must be a datetime, got {type(value).__name__}")
    problem = time_problem(value, name)
    if problem is not None:
        raise InvalidOptions(problem)
    return value.astimezone(UTC)


def check_priority(value: object) -> int:
    """Return `value` if it is an integer (not a bool) from `MIN_PRIORITY` to
    `MAX_PRIORITY`, else raise `InvalidOptions` naming `priority`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOptions(f"priority must be an integer, got {type(value).__name__}")
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        # A huge int is not printed whole (past 4300 digits str() even refuses it).
        shown = str(value) if abs(value) < 10**18 else f"{'-' if value < 0 else ''}10**18 or more"
        raise InvalidOptions(
            f"priority must be between {MIN_PRIORITY} and {MAX_PRIORITY}, got {shown}"
        )
    return value


def check_unique_key(value: object) -> str:
    """Return `value` if it is a string of 1 to `MAX_UNIQUE_KEY_LENGTH` characters without
    NUL (PostgreSQL text cannot hold one), else raise `InvalidOptions` naming `unique_key`."""
    if not isinstance(value, str):
        raise InvalidOptions(f"unique_key must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidOptions("unique_key must not be empty")
    if len(value) > MAX_UNIQUE_KEY_LENGTH:
        raise InvalidOptions(
            f"unique_key is {len(value)} characters; the limit is {MAX_UNIQUE_KEY_LENGTH}"
        )
    if "\x00" in value:
        raise InvalidOptions("unique_key must not contain the NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidOptions("unique_key must be valid Unicode (no lone surrogates)") from None
    return value


def check_status(value: object) -> JobStatus | None:
    """`None`, or the `JobStatus` named by `value` (exact lower-case name)."""
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return JobStatus(value)
    except ValueError:
        names = ", ".join(status.value for status in JobStatus)
        raise InvalidOptions(f"status must be one of {names}; got {value!r}") from None


def check_page(limit: object, offset: object) -> tuple[int, int]:
    """Validate paging: 1 <= limit <= 500, offset >= 0."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidOptions(f"limit must be an integer from 1 to {MAX_PAGE_SIZE}, got {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidOptions(f"offset must be a non-negative integer, got {offset!r}")
    return limit, offset


def check_delete_finished(
    statuses: Collection[object], before: object, limit: object
) -> tuple[tuple[JobStatus, ...], datetime, int]:
    """The arguments of `JobStore.delete_finished`, checked the same in every store: the
    statuses (final ones only, at least one) sorted and without repeats, `before` as UTC,
    and `limit` (at least 1). Anything else is `InvalidOptions`, before any row is read."""
    if isinstance(statuses, str | bytes):
        raise InvalidOptions(f"statuses must be a collection of statuses, got {statuses!r}")
    finals = ", ".join(sorted(status.value for status in FINAL_STATUSES))
    wanted: set[JobStatus] = set()
    for value in statuses:
        # A `JobStatus` is its own string value, so "failed" names FAILED here too.
        if not isinstance(value, str) or value not in FINAL_STATUSES:
            raise InvalidOptions(f"statuses must be final ({finals}), got {value!r}")
        wanted.add(JobStatus(value))
    if not wanted:
        raise InvalidOptions(f"statuses must name at least one of {finals}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidOptions(f"limit must be an integer of at least 1, got {limit!r}")
    return tuple(sorted(wanted)), check_time(before, "before"), limit
