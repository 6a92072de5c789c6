"""Attempt history: what each failed attempt of a job left behind, newest last, capped.

`last_error` says only how the latest attempt ended; an operator looking at a job that
failed three times wants all three, with their tracebacks, and a requeue must not erase
them. Each failed attempt (a handler's error, a timeout, a lease that ran out, a stop at
a cancel request) appends one `AttemptError`; the oldest fall off past `MAX_ERRORS`.
Stores keep the history as JSON (`errors_to_json` / `errors_from_json`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import attrs

#: Most attempts a job's history keeps; older ones are dropped.
MAX_ERRORS: Final = 20
#: Longest traceback kept per attempt, in characters; a longer one keeps its end (where
#: the error was raised), after a marker.
MAX_TRACEBACK_LENGTH: Final = 4096
_CUT: Final = "…[truncated]\n"


@attrs.frozen(kw_only=True)
class AttemptError:
    """One failed attempt of a job."""

    #: Which attempt: 1 for the first run, counting since the job was enqueued or last
    #: requeued (so a requeued job's history starts again at 1 after its older entries).
    attempt: int
    #: When the attempt ended (UTC).
    at: datetime
    #: How it ended: the handler's error, or what the worker or a rescue recorded
    #: ("timed out after ...", "lock expired", "cancelled").
    error: str
    #: The handler's traceback, cut to its last `MAX_TRACEBACK_LENGTH` characters; None
    #: when no exception was raised (a timeout, an expired lease, a cancel).
    traceback: str | None = None


def clip_traceback(text: str) -> str:
    """`text`, or its last `MAX_TRACEBACK_LENGTH` characters after a marker."""
    if len(text) <= MAX_TRACEBACK_LENGTH:
        return text
    return _CUT + text[len(text) - (MAX_TRACEBACK_LENGTH - len(_CUT)) :]


def recorded(
    errors: Sequence[AttemptError],
    *,
    attempt: int,
    at: datetime,
    error: str | None,
    traceback: str | None,
) -> tuple[AttemptError, ...]:
    """`errors` with one more attempt at the end, keeping the newest `MAX_ERRORS`."""
    entry = AttemptError(
        attempt=attempt,
        at=at,
        error=error or "",
        traceback=None if traceback is None else clip_traceback(traceback),
    )
    return (*errors[max(0, len(errors) - MAX_ERRORS + 1) :], entry)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def errors_to_json(errors: Sequence[AttemptError]) -> list[dict[str, Any]]:
    """The JSON form stores keep: one object per attempt, times as RFC 3339 UTC text."""
    return [
        {"attempt": e.attempt, "at": _iso(e.at), "error": e.error, "traceback": e.traceback}
        for e in errors
    ]


_KEYS: Final = frozenset({"attempt", "at", "error", "traceback"})


def errors_from_json(value: object) -> tuple[AttemptError, ...]:
    """Read back what `errors_to_json` wrote; raise `ValueError` or `TypeError` on
    anything else (a corrupt row)."""
    if not isinstance(value, list):
        raise TypeError(f"attempt history must be a JSON array, got {type(value).__name__}")
    if not value:
        return ()
    return tuple(_entry(item) for item in value)


def _entry(item: object) -> AttemptError:
    if not isinstance(item, dict) or item.keys() != _KEYS:
        raise ValueError(f"not an attempt record {{attempt, at, error, traceback}}: {item!r:.80}")
    attempt, at, error, trace = item["attempt"], item["at"], item["error"], item["traceback"]
    if type(attempt) is not int or not isinstance(error, str):
        raise TypeError(f"attempt record with a bad attempt or error: {item!r:.80}")
    if trace is not None and not isinstance(trace, str):
        raise TypeError(f"attempt record with a bad traceback: {item!r:.80}")
    if not isinstance(at, str) or not at.endswith("Z"):
        raise ValueError(f"attempt record with a bad time: {at!r:.80}")
    return AttemptError(
        attempt=attempt, at=datetime.fromisoformat(at), error=error, traceback=trace
    )
