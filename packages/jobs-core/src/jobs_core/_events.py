"""What the worker and its services report as it happens: the observer seam.

Logging is one observer; metrics or a live view are others, kept out of the core so it
depends on attrs and cattrs only. Observers are called synchronously on the event loop
in the middle of the claim and write paths, so they must be cheap: count, append, set
an event; hand anything slow to a task or a thread of your own. An observer that raises
is logged once and then ignored, so it never breaks the worker.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Protocol

from jobs_core._model import Job

_log = logging.getLogger("jobs_core.events")


class Outcome(enum.StrEnum):
    """How a run ended, as written to the store."""

    COMPLETED = "completed"
    #: The attempt failed and the job waits for its retry (`pending`, `retries + 1`).
    RETRIED = "retried"
    #: The attempt failed and no retries are left (`failed`).
    FAILED = "failed"
    #: Handed back unrun because the worker stopped (`pending`, attempt not counted).
    RELEASED = "released"
    #: Stopped at a client's cancel request (`cancelled`, never retried).
    CANCELLED = "cancelled"
    #: The handler raised `Snooze`: `pending` again after its delay, not counted.
    SNOOZED = "snoozed"


#: `refused`'s event for an abandoned thread's completion arriving after its timeout.
LATE_COMPLETION = "late completion"


class JobsObserver(Protocol):
    """Receives the worker's events. Subclass `BaseObserver` and override what you need.

    `jobs` and `job` are the core's frozen values: keep them if you like, but do the
    work elsewhere; every call runs on the event loop, inline.
    """

    def enqueued(self, jobs: Sequence[Job]) -> None:
        """An enqueue through this `Jobs` stored these new jobs (never called with none;
        a unique key's duplicates are not among them)."""

    def claimed(self, jobs: Sequence[Job]) -> None:
        """A claim returned these jobs (never called with none)."""

    def started(self, job: Job) -> None:
        """The handler of this claimed job is about to run."""

    def finished(self, job: Job, outcome: Outcome, duration: timedelta, error: str | None) -> None:
        """The run's outcome was written: `job` as stored, `duration` the handler's run
        time on the `Jobs` clock, `error` the failure text (`RETRIED`/`FAILED` only)."""

    def refused(self, job: Job, event: str) -> None:
        """Fencing refused this run's result because the lease was lost (it expired and
        was rescued, or the job changed), or a stopping worker gave up writing it (the
        lease will expire and the rescuer retry the job): `job` as claimed, `event` the
        `Outcome` value it tried to record or `"late completion"`. No `finished`
        follows."""

    def rescued(self, jobs: Sequence[Job]) -> None:
        """The lease rescuer took these jobs from expired leases (as now stored:
        `pending` to retry, or `failed`)."""

    def store_error(self, operation: str, error: BaseException, retry_in: timedelta | None) -> None:
        """A store call failed: `operation` is `"claim"`, `"write"` (results),
        `"watch"` (notifications) or a maintenance service's `name` (`"rescue"`);
        `retry_in` the wait before it is tried again (`None`: given up, as a stopping
        writer does at last)."""

    def store_recovered(self, operation: str) -> None:
        """`operation` succeeded again after one or more `store_error`s."""


class BaseObserver:
    """An observer that ignores every event; override only the ones you need.

    (The core skips the methods you did not override, so they cost nothing.)
    """

    def enqueued(self, jobs: Sequence[Job]) -> None:
        """Ignored."""

    def claimed(self, jobs: Sequence[Job]) -> None:
        """Ignored."""

    def started(self, job: Job) -> None:
        """Ignored."""

    def finished(self, job: Job, outcome: Outcome, duration: timedelta, error: str | None) -> None:
        """Ignored."""

    def refused(self, job: Job, event: str) -> None:
        """Ignored."""

    def rescued(self, jobs: Sequence[Job]) -> None:
        """Ignored."""

    def store_error(self, operation: str, error: BaseException, retry_in: timedelta | None) -> None:
        """Ignored."""

    def store_recovered(self, operation: str) -> None:
        """Ignored."""


#: How each refused event reads in the log.
_RESULT_NAMES = {
    Outcome.COMPLETED.value: "completed",
    Outcome.RETRIED.value: "failed",
    Outcome.FAILED.value: "failed",
    Outcome.RELEASED.value: "released at shutdown",
    Outcome.CANCELLED.value: "cancelled",
    Outcome.SNOOZED.value: "snoozed",
}
#: Per store operation, what the log says: what failed, what happens next, and the
#: line once it works again.
_STORE_LINES = {
    "claim": (
        "store error while claiming",
        "retrying in",
        "store reachable again; claiming resumed",
    ),
    "rescue": (
        "store error while rescuing expired leases",
        "next sweep in",
        "rescue sweep succeeded again",
    ),
    "write": ("writing job results failed", "retrying in", "writing job results works again"),
    "renew": (
        "store error while renewing the leases of running jobs",
        "retrying in",
        "lease renewals work again",
    ),
    "watch": (
        "store notifications stopped",
        "polling meanwhile; listening again in",
        "store notifications resumed",
    ),
}


#: Control characters a handler's text may carry into a log line (a newline could forge
#: a line of its own, an escape sequence rewrite the operator's terminal).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: The same, but newline and tab: a traceback keeps its lines.
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escaped(text: str | None, pattern: re.Pattern[str] = _CONTROL) -> str | None:
    """`text` with each control character matched by `pattern` written as `\\xNN`."""
    if text is None or not pattern.search(text):
        return text
    return pattern.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _store_lines(operation: str) -> tuple[str, str, str]:
    found = _STORE_LINES.get(operation)
    if found is None:
        return f"store error in {operation}", "retrying in", f"store {operation} works again"
    return found


class LoggingObserver(BaseObserver):
    """The worker's log lines, on the `jobs_core.worker` logger unless told otherwise.

    Failed attempts that will be retried, and runs stopped at a cancel request, at
    INFO; a final failure (with its traceback), rescued leases, refused results and
    store errors at WARNING. `Jobs` always has one; pass your own to log elsewhere.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else logging.getLogger("jobs_core.worker")

    def __repr__(self) -> str:
        return f"LoggingObserver({self.logger.name!r})"

    def finished(self, job: Job, outcome: Outcome, duration: timedelta, error: str | None) -> None:
        """Log a failed attempt (a final one at WARNING, with its traceback) and a run
        stopped at a cancel request."""
        if outcome is Outcome.RETRIED:
            self.logger.info(
                "job %s (%s) attempt %d failed, will retry: %s",
                job.id,
                _escaped(job.topic),
                job.retries,
                _escaped(error),
            )
        elif outcome is Outcome.FAILED:
            last = job.errors[-1] if job.errors else None
            trace = _escaped(last.traceback, _CONTROL_BUT_LINES) if last is not None else None
            self.logger.warning(
                "job %s (%s) failed for good at attempt %d: %s%s",
                job.id,
                _escaped(job.topic),
                job.retries + 1,
                _escaped(error),
                f"\n{trace.rstrip()}" if trace else "",
            )
        elif outcome is Outcome.CANCELLED:
            self.logger.info(
                "job %s (%s) cancelled at attempt %d", job.id, job.topic, job.retries + 1
            )

    def refused(self, job: Job, event: str) -> None:
        """Log a result that fencing refused (or a lease lost at renewal)."""
        if event == "renew":
            self.logger.warning(
                "job %s (%s): lease lost at renewal (it expired and was rescued, or the job"
                " was changed); its handler was stopped and nothing is recorded for this run",
                job.id,
                job.topic,
            )
            return
        self.logger.warning(
            "job %s: %s result refused by the store: the lease was lost"
            " (it expired and was rescued, or the job was changed)",
            job.id,
            _RESULT_NAMES.get(event, event),
        )

    def rescued(self, jobs: Sequence[Job]) -> None:
        """Log each job taken from an expired lease."""
        for job in jobs:
            self.logger.warning(
                "job %s (%s): lease expired; counted as a failed attempt, now %s",
                job.id,
                job.topic,
                job.status.value,
            )

    def store_error(self, operation: str, error: BaseException, retry_in: timedelta | None) -> None:
        """Log a failed store call, and when it is tried again (ERROR if never)."""
        what, then, _ = _store_lines(operation)
        if retry_in is None:
            self.logger.error(
                "%s (%s: %s); giving up: the leases of the jobs concerned will expire"
                " and the jobs be retried",
                what,
                type(error).__name__,
                error,
            )
            return
        self.logger.warning(
            "%s (%s: %s); %s %.1fs",
            what,
            type(error).__name__,
            error,
            then,
            retry_in.total_seconds(),
        )

    def store_recovered(self, operation: str) -> None:
        """Log that a failing store operation works again."""
        self.logger.info("%s", _store_lines(operation)[2])


def _overrides(observer: object, name: str) -> Callable[..., None] | None:
    """`observer.name` if it does something: absent or `BaseObserver`'s no-op gives None."""
    method = getattr(observer, name, None)
    if method is None or getattr(type(observer), name, None) is getattr(BaseObserver, name):
        return None
    return method  # type: ignore[no-any-return]


class ObserverGroup:
    """Several observers as one: each event goes to each observer that handles it, and
    an observer's exception is logged (once per observer) instead of propagating."""

    def __init__(self, observers: Sequence[JobsObserver]) -> None:
        self.observers = tuple(observers)
        self._quiet: set[int] = set()  # ids of observers that raised (logged already)
        self._enqueued = self._handling("enqueued")
        self._claimed = self._handling("claimed")
        self._started = self._handling("started")
        self._finished = self._handling("finished")
        self._refused = self._handling("refused")
        self._rescued = self._handling("rescued")
        self._store_error = self._handling("store_error")
        self._store_recovered = self._handling("store_recovered")

    def _handling(self, event: str) -> tuple[tuple[object, Callable[..., None]], ...]:
        """The observers that handle `event`, each with its bound method."""
        return tuple(
            (observer, method)
            for observer in self.observers
            if (method := _overrides(observer, event)) is not None
        )

    def _raised(self, observer: object, event: str, exc: Exception) -> None:
        if id(observer) in self._quiet:
            return
        self._quiet.add(id(observer))
        _log.error(
            "observer %r raised in %s (%s: %s); the worker goes on, and this"
            " observer's further errors are not logged",
            observer,
            event,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )

    def enqueued(self, jobs: Sequence[Job]) -> None:
        for observer, method in self._enqueued:
            try:
                method(jobs)
            except Exception as exc:  # noqa: BLE001 - an observer never breaks enqueue
                self._raised(observer, "enqueued", exc)

    def claimed(self, jobs: Sequence[Job]) -> None:
        for observer, method in self._claimed:
            try:
                method(jobs)
            except Exception as exc:  # noqa: BLE001 - an observer never breaks the worker
                self._raised(observer, "claimed", exc)

    def started(self, job: Job) -> None:
        for observer, method in self._started:
            try:
                method(job)
            except Exception as exc:  # noqa: BLE001 - an observer never breaks the worker
                self._raised(observer, "started", exc)

    def finished(self, job: Job, outcome: Outcome, duration: timedelta, error: str | None) -> None:
        for observer, method in self._finished:
            try:
                method(job, outcome, duration, error)
            except Exception as exc:  # noqa: BLE001 - an observer never breaks the worker
                self._raised(observer, "finished", exc)

    def refused(self, job: Job, event: str) -> None:
        for observer, method in self._refused:
            try:
                method(job, event)
            except Exception as exc:  # noqa: BLE001 - an observer never breaks the worker
                self._raised(observer, "refused", exc)

    def rescued(self, jobs: Sequence[Job]) -> None:
        for observer, method in self._rescued:
            try:
                method(jobs)
            except Exception as exc:  # noqa: BLE001 - an observer never breaks the worker
                self._raised(observer, "rescued", exc)

    def store_error(self, operation: str, error: BaseException, retry_in: timedelta | None) -> None:
        for observer, method in self._store_error:
            try:
                method(operation, error, retry_in)
            except Exception as exc:  # noqa: BLE001 - an observer never breaks the worker
                self._raised(observer, "store_error", exc)

    def store_recovered(self, operation: str) -> None:
        for observer, method in self._store_recovered:
            try:
                method(operation)
            except Exception as exc:  # noqa: BLE001 - an observer never breaks the worker
                self._raised(observer, "store_recovered", exc)
