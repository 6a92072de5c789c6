"""Every kind of bad input is refused with its own error, and nothing is stored."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from jobs_core import (
    EnqueueOptions,
    InvalidOptions,
    InvalidPayload,
    InvalidTopic,
    Jobs,
    JobsConfig,
    MemoryStore,
    PayloadTooLarge,
    TopicAlreadyRegistered,
)


async def assert_nothing_stored(jobs: Jobs) -> None:
    assert (await jobs.stats()).total == 0


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("", "must not be empty"),
        ("x" * 256, "256 characters; the limit is 255"),
        ("has space", "may only contain"),
        ("<img src=x onerror=alert(1)>", "may only contain"),
        ("nul\x00", "may only contain"),
        ("tab\t", "may only contain"),
        ("line\n", "may only contain"),
        (123, "must be a string"),
        (None, "must be a string"),
    ],
)
async def test_bad_topics(jobs: Jobs, topic: object, message: str) -> None:
    """Empty, too long, or outside letters, digits and . _ : - /."""
    with pytest.raises(InvalidTopic, match=message):
        await jobs.enqueue(topic, {})  # type: ignore[arg-type]
    await assert_nothing_stored(jobs)


async def test_longest_and_widest_topic_is_accepted(jobs: Jobs) -> None:
    """255 characters of the allowed set pass."""
    topic = ("aZ09._:-/" * 30)[:255]
    assert (await jobs.enqueue(topic, None)).topic == topic


def _deep(levels: int) -> object:
    value: object = 0
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (math.nan, "NaN or Infinity"),
        ({"x": [1, math.inf]}, "NaN or Infinity"),
        ({"s": "a\x00b"}, "NUL"),
        ({"a\x00": 1}, "NUL"),
        ({1: "int key"}, "non-string key"),
        ({"when": datetime(2030, 1, 1)}, "datetime, which is not JSON"),
        ({1, 2}, "set, which is not JSON"),
        (b"bytes", "bytes, which is not JSON"),
        (_deep(100_000), "deeper than 64"),
        ([10**5000], "not JSON-serializable"),
        ({"s": "\ud800"}, "unpaired surrogate"),
        ({"\udfff": 1}, "unpaired surrogate"),
    ],
    ids=[
        "nan",
        "inf",
        "nul",
        "nul-key",
        "int-key",
        "datetime",
        "set",
        "bytes",
        "deep",
        "bigint",
        "surrogate",
        "surrogate-key",
    ],
)
async def test_bad_payloads(jobs: Jobs, payload: object, message: str) -> None:
    """Strict JSON only: no NaN/Infinity, NUL, non-string keys, foreign types, deep nesting."""
    with pytest.raises(InvalidPayload, match=message):
        await jobs.enqueue("t", payload)
    await assert_nothing_stored(jobs)


async def test_payload_over_the_limit(jobs: Jobs) -> None:
    """1 MiB of serialized JSON is the limit; one byte more is refused."""
    envelope = len('{"s":""}')
    at_limit = {"s": "x" * (1024 * 1024 - envelope)}
    await jobs.enqueue("t", at_limit)
    with pytest.raises(PayloadTooLarge, match="1048577 bytes of JSON; the limit is 1048576"):
        await jobs.enqueue("t", {"s": "x" * (1024 * 1024 - envelope + 1)})
    assert (await jobs.stats()).total == 1


async def test_payload_limit_counts_utf8_bytes() -> None:
    """Multi-byte characters count as their UTF-8 size."""
    jobs = Jobs(MemoryStore(), config=JobsConfig(max_payload_size=10))
    with pytest.raises(PayloadTooLarge):
        await jobs.enqueue("t", "ééééé")  # 12 bytes with quotes


async def test_tuples_are_stored_as_lists(jobs: Jobs) -> None:
    """The stored payload is what JSON gives back, so every store returns the same value."""
    job = await jobs.enqueue("t", {"pair": (1, 2)})
    assert job.payload == {"pair": [1, 2]}


@pytest.mark.parametrize("max_retries", [-1, 101, 10**9, 1.5, "3", True])
async def test_bad_max_retries(jobs: Jobs, max_retries: object) -> None:
    """0..100 integers only; a bool is not an int here."""
    with pytest.raises(InvalidOptions, match="max_retries"):
        await jobs.enqueue_with_options("t", {}, EnqueueOptions(max_retries=max_retries))  # type: ignore[arg-type]
    await assert_nothing_stored(jobs)


async def test_zero_retries_is_allowed(jobs: Jobs) -> None:
    """`max_retries=0` means run once."""
    job = await jobs.enqueue_with_options("t", {}, EnqueueOptions(max_retries=0))
    assert job.max_retries == 0


@pytest.mark.parametrize(
    ("priority", "message"),
    [
        (-101, "priority must be between -100 and 100, got -101"),
        (101, "priority must be between -100 and 100, got 101"),
        (10**4000, r"priority must be between -100 and 100, got 10\*\*18 or more"),
        (-(10**30), r"got -10\*\*18 or more"),
        (True, "priority must be an integer, got bool"),
        (False, "priority must be an integer, got bool"),
        (1.0, "priority must be an integer, got float"),
        ("1", "priority must be an integer, got str"),
    ],
)
async def test_bad_priority(jobs: Jobs, priority: object, message: str) -> None:
    """-100..100 integers only (a bool is not an int here); nothing is stored, also by
    a batch."""
    options = EnqueueOptions(priority=priority)  # type: ignore[arg-type]
    with pytest.raises(InvalidOptions, match=message):
        await jobs.enqueue_with_options("t", {}, options)
    with pytest.raises(InvalidOptions, match="priority"):
        await jobs.enqueue_many("t", [1, 2], options)
    await assert_nothing_stored(jobs)


@pytest.mark.parametrize(("given", "stored"), [(None, 0), (-100, -100), (0, 0), (100, 100)])
async def test_priority_bounds_and_default(jobs: Jobs, given: int | None, stored: int) -> None:
    """`None` (and no option at all) is the default 0; both ends are allowed."""
    job = await jobs.enqueue_with_options("t", {}, EnqueueOptions(priority=given))
    assert job.priority == stored
    (one, two) = await jobs.enqueue_many("t", [1, 2], EnqueueOptions(priority=given))
    assert (one.priority, two.priority) == (stored, stored)
    assert (await jobs.get(job.id)).priority == stored
    assert (await jobs.enqueue("t", {})).priority == 0


async def test_naive_run_at_is_refused(jobs: Jobs) -> None:
    """A datetime without a timezone is ambiguous."""
    with pytest.raises(InvalidOptions, match="timezone-aware"):
        await jobs.enqueue_at("t", {}, datetime(2030, 1, 1))
    await assert_nothing_stored(jobs)


async def test_run_at_is_normalised_to_utc(jobs: Jobs) -> None:
    """Any offset is accepted and stored as UTC."""
    from datetime import UTC, timezone

    local = datetime(2030, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    job = await jobs.enqueue_at("t", {}, local)
    assert job.run_at == local
    assert job.run_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": True}, "limit"),
        ({"offset": -1}, "offset"),
        ({"status": "PENDING"}, "status must be one of"),
        ({"status": "bogus"}, "status must be one of"),
    ],
)
async def test_bad_list_arguments(jobs: Jobs, kwargs: dict[str, object], message: str) -> None:
    """Paging and filters are checked before the store is asked."""
    with pytest.raises(InvalidOptions, match=message):
        await jobs.list(**kwargs)  # type: ignore[arg-type]


async def test_second_handler_for_a_topic_is_refused(jobs: Jobs) -> None:
    """One handler per topic."""
    jobs.register("t", lambda job: None)
    with pytest.raises(TopicAlreadyRegistered, match="'t'"):
        jobs.register("t", lambda job: None)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_payload_size": 0},
        {"worker_pool_size": 0},
        {"batch_size": -1},
        {"lock_duration": timedelta(0)},
        {"poll_interval": timedelta(seconds=-1)},
        {"max_retries": -1},
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, object]) -> None:
    """Config values are checked when the config is built."""
    with pytest.raises(InvalidOptions):
        JobsConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["lock_duration", "poll_interval", "shutdown_grace"])
@pytest.mark.parametrize(
    ("value", "shown"), [(True, "bool True"), ("soon", "str 'soon'"), ([1], "list [1]")]
)
def test_a_duration_of_another_type_says_so(field: str, value: object, shown: str) -> None:
    """A duration is a timedelta, seconds or text like '30s': the error names the type
    and the forms, not the sign."""
    message = (
        f"{field} must be a duration: a timedelta, a number of seconds, or text such as"
        f" '30s', '5m' or '1h30m'; got {shown}"
    )
    with pytest.raises(InvalidOptions) as caught:
        JobsConfig(**{field: value})  # type: ignore[arg-type]
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.2, timedelta(milliseconds=200)),
        (5, timedelta(seconds=5)),
        ("1s", timedelta(seconds=1)),
        ("250ms", timedelta(milliseconds=250)),
        ("1h30m", timedelta(minutes=90)),
        (" 2D ", timedelta(days=2)),
        ("1.5", timedelta(seconds=1.5)),
    ],
)
def test_a_duration_in_seconds_or_text_is_stored_as_a_timedelta(
    value: object, expected: timedelta
) -> None:
    assert JobsConfig(poll_interval=value).poll_interval == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["max_payload_size", "worker_pool_size", "batch_size"])
@pytest.mark.parametrize(("value", "shown"), [(True, "bool True"), (2.0, "float 2.0")])
def test_a_count_that_is_not_an_int_says_so(field: str, value: object, shown: str) -> None:
    with pytest.raises(InvalidOptions) as caught:
        JobsConfig(**{field: value})  # type: ignore[arg-type]
    assert str(caught.value) == f"{field} must be an integer, got {shown}"


def test_zero_shutdown_grace_is_allowed_and_negative_is_not() -> None:
    assert JobsConfig(shutdown_grace=timedelta(0)).shutdown_grace == timedelta(0)
    with pytest.raises(InvalidOptions, match="must not be negative"):
        JobsConfig(shutdown_grace=timedelta(seconds=-1))


@pytest.mark.parametrize("grace", ["later", -1])
async def test_stop_grace_must_be_a_duration_like_the_config(grace: object) -> None:
    """`stop(grace=)` takes the same forms as `JobsConfig.shutdown_grace`."""
    jobs = Jobs(MemoryStore())
    with pytest.raises(InvalidOptions, match=r"grace must (be a duration|not be negative)"):
        await jobs.stop(grace=grace)  # type: ignore[arg-type]
