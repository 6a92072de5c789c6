"""What an enqueue answers when a job may have a unique key: the job, and whether it is new.

A duplicate enqueue (`EnqueueOptions.unique_key` held by an active job of the topic)
stores nothing and answers the job that holds the key; these types say which happened
without changing what `enqueue` and `enqueue_many` return to callers that do not care.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from jobs_core._model import Job


@attrs.frozen
class Enqueued:
    """One enqueue's answer (`Jobs.submit`): the job as stored, and `new` (False: an
    active job of the topic held the unique key, and `job` is that one)."""

    job: Job
    new: bool


class EnqueuedJobs(list[Job]):
    """`Jobs.enqueue_many`'s answer: the jobs, one per payload in order (a duplicate is
    the job that held its key, which may be an earlier job of the same batch), and
    `new`, a flag per job: True when this call stored it."""

    new: tuple[bool, ...]

    def __init__(self, jobs: Iterable[Job] = (), new: Sequence[bool] | None = None) -> None:
        super().__init__(jobs)
        self.new = tuple(new) if new is not None else (True,) * len(self)
        if len(self.new) != len(self):
            raise ValueError(f"{len(self)} jobs but {len(self.new)} new flags")

    @property
    def added(self) -> list[Job]:
        """The jobs this call stored (each once)."""
        return [job for job, new in zip(self, self.new, strict=True) if new]
