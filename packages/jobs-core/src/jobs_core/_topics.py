"""Per-topic policies (paused topics, global concurrency limits) and the claim's arithmetic.

A store keeps one policy row per topic that has a non-default setting (paused, or a
`max_running` limit); a topic without one is unlimited and claimable. The claim applies
the policies itself, in its own statement or transaction, so every worker of every
process obeys them from its next poll: `claim_allowances` is the rule each store follows
(and the contract kit's model checks).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import attrs

from jobs_core._errors import InvalidOptions
from jobs_core._model import Job, JobStatus

__all__ = [
    "TopicInfo",
    "TopicPolicy",
    "check_concurrency",
    "check_max_running",
    "claim_allowances",
    "pick_within_allowances",
    "topic_infos",
]


@attrs.frozen(kw_only=True)
class TopicPolicy:
    """A topic's stored settings: `paused` (no claim takes its jobs) and `max_running`
    (at most that many of its jobs `processing` at once across every worker; None: no
    limit; 0 holds the topic like a pause)."""

    topic: str
    paused: bool = False
    max_running: int | None = None

    @property
    def is_default(self) -> bool:
        """Whether the policy says nothing (a store then keeps no row for the topic)."""
        return not self.paused and self.max_running is None


@attrs.frozen(kw_only=True)
class TopicInfo:
    """One topic as `Jobs.list_topics()` reports it: its jobs counted by status (every
    status present, zero when none), whether it is paused, and its global limit."""

    topic: str
    counts: Mapping[JobStatus, int]
    paused: bool = False
    max_running: int | None = None
    #: The earliest `run_at` among the topic's `pending` jobs (None: none pending).
    oldest_pending: datetime | None = None

    @property
    def running(self) -> int:
        """Jobs of the topic in `processing` (expired but not yet rescued leases too)."""
        return self.counts.get(JobStatus.PROCESSING, 0)

    def due_lag(self, now: datetime) -> timedelta:
        """How long the topic's oldest due job has been waiting at `now`: zero when no
        pending job is due (the lag to alert on)."""
        if self.oldest_pending is None or self.oldest_pending >= now:
            return timedelta(0)
        return now - self.oldest_pending


def topic_infos(
    counted: Iterable[tuple[str, JobStatus | str, int, datetime | None]],
    policies: Iterable[TopicPolicy],
) -> list[TopicInfo]:
    """What `JobStore.topics()` answers, from its jobs grouped by (topic, status) (each
    group: topic, status, count, earliest `run_at`) and its stored policies: every topic
    with jobs or a policy, by name, every status counted (zero when none), with its
    settings and its oldest pending job's `run_at`."""
    rules = {policy.topic: policy for policy in policies}
    counts = {topic: dict.fromkeys(JobStatus, 0) for topic in rules}
    oldest: dict[str, datetime] = {}
    for topic, status, n, earliest in counted:
        counts.setdefault(topic, dict.fromkeys(JobStatus, 0))[JobStatus(status)] = int(n)
        if JobStatus(status) is JobStatus.PENDING and earliest is not None:
            oldest[topic] = earliest
    infos = []
    for topic in sorted(counts):
        policy = rules.get(topic, TopicPolicy(topic=topic))
        infos.append(
            TopicInfo(
                topic=topic,
                counts=counts[topic],
                paused=policy.paused,
                max_running=policy.max_running,
                oldest_pending=oldest.get(topic),
            )
        )
    return infos


def check_max_running(value: object) -> int | None:
    """A global limit: a non-negative int (0 holds the topic), or None (no limit)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidOptions(
            f"max_running must be a non-negative integer or None (no limit), got {value!r}"
        )
    return value


def check_concurrency(value: object) -> int:
    """A per-worker limit given at registration: a positive int."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidOptions(f"concurrency must be a positive integer, got {value!r}")
    return value


def claim_allowances(
    topics: Iterable[str],
    *,
    limit: int,
    policies: Mapping[str, TopicPolicy],
    running: Mapping[str, int],
    caps: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """How many jobs a claim may take of each of `topics` (topics allowing none left out).

    A paused topic allows none; a limited one `max_running` less its `running` jobs
    (every `processing` row counts, an expired lease not yet rescued too: its handler
    may still run); a topic the caller caps (a worker's `concurrency=`) at most its
    cap. Nothing allows more than `limit`.
    """
    allowed: dict[str, int] = {}
    for topic in dict.fromkeys(topics):
        n = limit
        policy = policies.get(topic)
        if policy is not None:
            if policy.paused:
                continue
            if policy.max_running is not None:
                n = min(n, policy.max_running - running.get(topic, 0))
        if caps is not None and topic in caps:
            n = min(n, caps[topic])
        if n > 0:
            allowed[topic] = n
    return allowed


def pick_within_allowances(
    ordered: Iterable[Job], *, limit: int, allowances: Mapping[str, int]
) -> list[Job]:
    """The first `limit` of `ordered` (jobs in `CLAIM_ORDER`) whose topic has an allowance
    left, each taken counting against its topic's: what a limited claim picks."""
    left = dict(allowances)
    picked: list[Job] = []
    for job in ordered:
        if len(picked) >= limit:
            break
        if left.get(job.topic, 0) > 0:
            left[job.topic] -= 1
            picked.append(job)
    return picked
