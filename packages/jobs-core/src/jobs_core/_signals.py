"""What a handler may raise to end its run otherwise than by returning or failing."""

from __future__ import annotations

from datetime import timedelta

from jobs_core._config import check_duration
from jobs_core._durations import Duration, parse_duration


class HandlerSignal(Exception):
    """Base of the exceptions a handler raises to tell the worker how its run ended."""


class Snooze(HandlerSignal):
    """Run the job again after `delay`, the attempt not counted (`pending` at
    `now + delay`). A job snoozed `MAX_SNOOZES` times fails instead."""

    def __init__(self, delay: Duration) -> None:
        self.delay = _non_negative(delay, "Snooze delay")
        super().__init__(f"snoozed for {self.delay.total_seconds():g}s")


class Retry(HandlerSignal):
    """A failed attempt, retried after `after` instead of the backoff (say, a 429's
    Retry-After) while retries remain; `None` keeps the backoff."""

    def __init__(self, reason: str = "", *, after: Duration | None = None) -> None:
        self.after = None if after is None else _non_negative(after, "Retry after")
        self.reason = reason or "retry requested"
        super().__init__(self.reason)


class GiveUp(HandlerSignal):
    """The job can never succeed: `failed` now, whatever retries remain."""

    def __init__(self, reason: str) -> None:
        self.reason = reason or "gave up"
        super().__init__(self.reason)


def _non_negative(value: object, name: str) -> timedelta:
    duration = parse_duration(value, name)
    if duration == timedelta(0):
        return duration
    return check_duration(duration, name)
