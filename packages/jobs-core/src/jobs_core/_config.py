"""Configuration of a `Jobs` instance; defaults are the seed's constants."""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, cast

import attrs

from jobs_core._durations import Duration, parse_duration
from jobs_core._errors import InvalidOptions

#: The prefix of the environment variables `JobsConfig.from_env` reads.
ENV_PREFIX = "JOBS_"

#: Highest `max_retries` accepted anywhere (per job or as the default).
MAX_RETRIES_LIMIT = 100

Backoff = Callable[[int], timedelta]


def exponential_backoff(
    base: timedelta = timedelta(seconds=1),
    cap: timedelta = timedelta(hours=1),
    jitter: float = 0.1,
) -> Backoff:
    """Delay before retry number `n` (0-based): `base * 2**n`, ±`jitter`, at most `cap`."""

    def delay(retry: int) -> timedelta:
        raw = base.total_seconds() * 2 ** min(retry, 64)
        jittered = min(raw, cap.total_seconds()) * random.uniform(1 - jitter, 1 + jitter)
        return timedelta(seconds=min(jittered, cap.total_seconds()))

    return delay


default_backoff: Backoff = exponential_backoff()

#: Longest wait before retrying a failed store call (claim, sweep, watch).
STORE_BACKOFF_CAP = timedelta(seconds=5)


def store_backoff(base: timedelta, failures: int) -> timedelta:
    """Wait after `failures` failed store calls in a row: `base` doubling from the
    first failure, at most `STORE_BACKOFF_CAP`."""
    doubled: timedelta = base * 2 ** min(failures, 16)
    return min(doubled, STORE_BACKOFF_CAP)


def _to_timedelta(value: Duration) -> timedelta:
    """A field's converter: `value` as a `timedelta` when it is a duration, else as it
    is, so that the field's validator refuses it with the field's name."""
    try:
        return parse_duration(value, "duration")
    except InvalidOptions:
        return cast(timedelta, value)


def _positive_duration(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_duration(value, attribute.name)


def check_duration(value: object, name: str) -> timedelta:
    """`value` as a positive `timedelta` (any `Duration` form), else `InvalidOptions`."""
    duration = parse_duration(value, name)
    if duration <= timedelta(0):
        raise InvalidOptions(f"{name} must be positive, got {value!r}")
    return duration


def _positive_int(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOptions(
            f"{attribute.name} must be an integer, got {type(value).__name__} {value!r}"
        )
    if value <= 0:
        raise InvalidOptions(f"{attribute.name} must be positive, got {value!r}")


def _grace(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    check_grace(value, attribute.name)


def check_grace(value: object, name: str = "grace") -> timedelta:
    """`value` as a shutdown grace: a `timedelta` (any `Duration` form), zero or more."""
    grace = parse_duration(value, name)
    if grace < timedelta(0):
        raise InvalidOptions(f"{name} must not be negative, got {value!r}")
    return grace


def _retries(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    check_max_retries(value)


def check_max_retries(value: object) -> int:
    """Return `value` if it is a valid `max_retries`, else raise `InvalidOptions`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOptions(f"max_retries must be an integer, got {value!r}")
    if not 0 <= value <= MAX_RETRIES_LIMIT:
        raise InvalidOptions(f"max_retries must be between 0 and {MAX_RETRIES_LIMIT}, got {value}")
    return value


@attrs.frozen(kw_only=True)
class JobsConfig:
    """Limits and timings of a `Jobs` instance and its worker. Durations take any
    `Duration` form (`timedelta`, seconds, `"30s"`, `"5m"`) and are stored as `timedelta`;
    `from_env()` reads every setting but `backoff` from `JOBS_*` variables."""

    #: Largest payload, in bytes of serialized JSON (1 MiB).
    max_payload_size: int = attrs.field(default=1024 * 1024, validator=_positive_int)
    #: Retries after the first attempt when a job does not say (so 4 runs at most).
    max_retries: int = attrs.field(default=3, validator=_retries)
    #: Execution timeout of one attempt (a topic may set its own at registration).
    lock_duration: timedelta = attrs.field(
        default=timedelta(minutes=5), converter=_to_timedelta, validator=_positive_duration
    )
    #: The crash-recovery lease: how long a claimed job stays leased without news from
    #: its worker, which renews it about every third of this while the handler runs. A
    #: killed worker's jobs run again after about this long.
    lease_duration: timedelta = attrs.field(
        default=timedelta(seconds=30), converter=_to_timedelta, validator=_positive_duration
    )
    #: How long an idle worker waits between claims when nothing wakes it.
    poll_interval: timedelta = attrs.field(
        default=timedelta(seconds=1), converter=_to_timedelta, validator=_positive_duration
    )
    #: Most jobs one worker runs at once.
    worker_pool_size: int = attrs.field(default=10, validator=_positive_int)
    #: Most jobs claimed in one store call.
    batch_size: int = attrs.field(default=10, validator=_positive_int)
    #: Delay before retry `n` (0-based); the default doubles from 1 s, ±10 %, capped at 1 h.
    backoff: Backoff = attrs.field(default=default_backoff, repr=False)
    #: How long `stop()` waits for in-flight jobs before cancelling and releasing them.
    shutdown_grace: timedelta = attrs.field(
        default=timedelta(seconds=30), converter=_to_timedelta, validator=_grace
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> JobsConfig:
        """A config from the environment (`environ`, default `os.environ`): each setting
        but `backoff` from `JOBS_` and its name in capitals (`JOBS_POLL_INTERVAL=500ms`,
        `JOBS_WORKER_POOL_SIZE=20`); unset ones keep their defaults, `overrides` win. A
        bad value raises `InvalidOptions` naming its variable."""
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in attrs.fields(cls):
            variable = ENV_PREFIX + field.name.upper()
            text = source.get(variable)
            if field.name == "backoff" or field.name in overrides or text is None:
                continue
            value: Any = text if field.converter is _to_timedelta else _integer(text, variable)
            try:
                values[field.name] = getattr(cls(**{field.name: value}), field.name)
            except InvalidOptions as exc:
                raise InvalidOptions(f"{variable}: {exc}") from None
        return cls(**values, **overrides)

    @property
    def lock_margin(self) -> timedelta:
        """Extra lease time past the timeout, so no rescuer takes a job still in its timeout."""
        return margin_past(self.lock_duration)

    @property
    def lease(self) -> timedelta:
        """The lease a claim takes: `lease_duration`, or less when the execution timeout
        and its margin end sooner (then no renewal is ever needed)."""
        return min(self.lease_duration, self.lock_duration + self.lock_margin)

    @property
    def renew_interval(self) -> timedelta:
        """How often running jobs' leases are renewed: a third of the lease, so that two
        renewals in a row may fail before a lease runs out."""
        return self.lease / 3


def _integer(text: str, variable: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise InvalidOptions(f"{variable} must be an integer, got {text!r}") from None


@functools.lru_cache(maxsize=64)
def margin_past(timeout: timedelta) -> timedelta:
    """How long a lease outlasts an execution `timeout`, so that no rescuer takes a job
    whose handler is still within it: 5 %, at least 1 s. (Cached: the worker asks for
    every job, and there are only as many timeouts as topics.)"""
    return max(timeout * 0.05, timedelta(seconds=1))
