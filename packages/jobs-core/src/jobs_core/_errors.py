"""Domain errors: one class per way a request can be refused, all under `JobsError`.

Each class answers "whose fault is this?": the caller's input (also a `ValueError`),
a job in the wrong state for the request, a lost lease, or the database. This module
imports nothing from its own package so every other module can import it.
"""

from __future__ import annotations


class JobsError(Exception):
    """Base class of every error Jobs raises on purpose."""


def _shown_id(job_id: str) -> str:
    """A job id as messages show it: quoted, cut after 64 characters (ids come from
    clients, and a 100 kB one must not come back in full)."""
    return f"{job_id[:64]!r}{'...' if len(job_id) > 64 else ''}"


class JobNotFound(JobsError, LookupError):
    """No job has this id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {_shown_id(job_id)} not found")
        self.job_id = job_id


class IllegalTransition(JobsError):
    """The job's current status does not allow the requested change."""

    def __init__(self, job_id: str, event: str, status: str, allowed: str) -> None:
        super().__init__(
            f"cannot {event} job {job_id!r}: it is {status}; only {allowed} jobs can be"
            f" {_past(event)}"
        )
        self.job_id = job_id
        self.event = event
        self.status = status


class CannotRequeue(IllegalTransition):
    """Only `failed` or `cancelled` jobs can be requeued."""


class UniqueKeyTaken(CannotRequeue):
    """A requeue would make a second active job of a topic and unique key: another
    `pending` or `processing` job holds the key (`holder_id`, when the store knows it).
    Nothing was written; requeue once the holder is final."""

    def __init__(
        self, job_id: str, topic: str, unique_key: str, holder_id: str | None = None
    ) -> None:
        holder = "another active job" if holder_id is None else f"job {holder_id!r}"
        JobsError.__init__(
            self,
            f"cannot requeue job {_shown_id(job_id)}: its unique key {unique_key[:64]!r} of"
            f" topic {topic!r} is held by {holder} (pending or processing)",
        )
        self.job_id = job_id
        self.event = "requeue"
        self.status = "key taken"
        self.topic = topic
        self.unique_key = unique_key
        self.holder_id = holder_id


class CannotDelete(IllegalTransition):
    """Only `pending`, `failed` or `cancelled` jobs can be deleted."""


class CannotCancel(IllegalTransition):
    """Only `pending` or `processing` jobs can be cancelled."""


class LockLost(JobsError):
    """A worker reported on a job whose lease it no longer holds (fencing refused it)."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"lock lost on job {job_id!r}: {reason}")
        self.job_id = job_id
        self.reason = reason


class JobBusy(JobsError):
    """A job changed under every one of a command's compare-and-set rounds; retry later.

    Nothing was written: a `requeue` or `delete` that cannot win its guarded write
    says so, rather than return a job it never stored or claim the job does not exist.
    """

    def __init__(self, job_id: str, event: str, rounds: int) -> None:
        super().__init__(
            f"job {job_id!r} changed under each of {rounds} {event} attempts; nothing was"
            " written, retry later"
        )
        self.job_id = job_id
        self.event = event
        self.rounds = rounds


class InvalidInput(JobsError, ValueError):
    """Base of the errors caused by a caller's bad input; nothing was stored."""


class InvalidTopic(InvalidInput):
    """A topic is empty, too long or uses characters outside `[A-Za-z0-9._:/-]`."""


class InvalidPayload(InvalidInput):
    """A payload is not strict JSON, or does not fit the type it is unmarshalled into."""


class PayloadTooLarge(InvalidPayload):
    """A payload's serialized JSON is larger than `JobsConfig.max_payload_size`."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"payload is {size} bytes of JSON; the limit is {limit} bytes")
        self.size = size
        self.limit = limit


class InvalidResult(InvalidPayload):
    """A handler's return value is not storable: not JSON, or larger than
    `JobsConfig.max_payload_size`. The attempt fails with this message."""


class InvalidOptions(InvalidInput):
    """An enqueue option (`run_at`, `max_retries`) or a configuration value is invalid."""


class InvalidSchedule(InvalidInput):
    """A schedule's definition is wrong: no timing or two (`cron` and `every`), a cron
    expression cronsim refuses, an unknown time zone, a non-positive `every`, an unknown
    `misfire`, a bad name, or a cron that never fires."""


class ScheduleNotFound(JobsError, LookupError):
    """No stored schedule has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"schedule {name[:64]!r} not found")
        self.name = name


class CronUnavailable(JobsError, RuntimeError):
    """A `cron=` schedule needs the optional cron parser: `pip install "jobs-core[cron]"`.

    (`every=` schedules need nothing.)"""

    def __init__(self) -> None:
        super().__init__(
            'cron schedules need the cronsim package: pip install "jobs-core[cron]"'
            " (every= schedules work without it)"
        )


class TopicAlreadyRegistered(JobsError, ValueError):
    """A second handler was registered for a topic that already has one."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"a handler is already registered for topic {topic!r}")
        self.topic = topic


class StoreError(JobsError):
    """The store failed in a way the caller cannot fix (corrupt data, bad schema, ...)."""


class UnreadableJob(StoreError):
    """A stored row cannot be turned into a `Job` (a time outside the valid range, a bad
    status or JSON...): corrupt data, named by job so an operator can delete it.

    `status` is the row's status when that column itself could be read, else None.
    `summary` is the message without `store` (which may name a file or server).
    """

    def __init__(
        self, job_id: str, problem: str, status: str | None = None, *, store: str = ""
    ) -> None:
        self.summary = f"stored job {_shown_id(job_id)} cannot be read: {problem}"
        super().__init__(f"{store}: {self.summary}" if store else self.summary)
        self.job_id = job_id
        self.problem = problem
        self.status = status

    @property
    def failed_reason(self) -> str:
        """`last_error` of the row once a claim or sweep has moved it to `failed`."""
        return f"moved to failed: the stored row could not be read ({self.problem})"


class StoreUnavailable(StoreError):
    """The database cannot be reached right now; retrying later may succeed."""


class SchemaMissing(StoreError):
    """The database has no jobs table, and the store was opened without creating one."""

    def __init__(self, url: str) -> None:
        super().__init__(f"no jobs table at {url}")
        self.url = url


class SchemaTooNew(StoreError):
    """The database's jobs schema is newer than this release knows: upgrade the package.

    Raised before anything is written, so a process running an older release next to
    newer ones stops instead of writing rows in a layout it does not understand.
    """

    def __init__(self, where: str, found: int, known: int) -> None:
        super().__init__(
            f"the jobs schema at {where} is version {found}, newer than this release"
            f" knows (up to {known}): upgrade the jobs packages"
        )
        self.where = where
        self.found = found
        self.known = known


class SchemaBehind(StoreError):
    """The database's jobs schema is older than this release, and the store was opened
    without migrating (`create_schema=False`): run `jobs migrate`, or open it normally."""

    def __init__(self, where: str, found: int, latest: int) -> None:
        super().__init__(
            f"the jobs schema at {where} is version {found}, older than this release's"
            f" {latest}: run `jobs migrate --db URL` (or open the store with create_schema)"
        )
        self.where = where
        self.found = found
        self.latest = latest


class UnknownStoreScheme(JobsError, ValueError):
    """No installed store adapter handles this URL scheme."""


def _past(event: str) -> str:
    return {"requeue": "requeued", "delete": "deleted", "cancel": "cancelled"}.get(
        event, event + "d"
    )
