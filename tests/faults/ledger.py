"""The execution ledger and the invariant checker of RELIABILITY.md §4.0.

Handlers under test write one row per execution into a SQLite file of their own,
outside the job table: a row is inserted when the handler starts (so an execution cut
short by `kill -9` still shows) and stamped when it returns, or when it is cancelled
(a lost lease, a stop). A store wrapper adds one row per completion or failure the
worker tried to write, with whether the store took it, and one per lease renewal it
sent, before sending it (so a renewal whose answer never came still shows). `check`
then reads the final job table and the ledger and lists every broken invariant (I1-I6)
together with the figures the fault tests print.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs

from jobs_core import (
    FINAL_STATUSES,
    LOCK_EXPIRED,
    MAX_PAGE_SIZE,
    Job,
    JobPage,
    JobQuery,
    Jobs,
    JobStats,
    JobStatus,
    JobStore,
    JobUpdate,
    TopicInfo,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    job_id TEXT NOT NULL,
    lock_token TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    locked_until REAL NOT NULL,
    stopped_at REAL
);
CREATE TABLE IF NOT EXISTS outcomes (
    job_id TEXT NOT NULL,
    lock_token TEXT NOT NULL,
    pid INTEGER NOT NULL,
    kind TEXT NOT NULL,
    applied INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS renewals (
    job_id TEXT NOT NULL,
    old_token TEXT NOT NULL,
    new_token TEXT NOT NULL,
    pid INTEGER NOT NULL,
    locked_until REAL NOT NULL,
    sent_at REAL NOT NULL,
    answered_at REAL,
    applied INTEGER
);
"""


@attrs.frozen(kw_only=True)
class Execution:
    """One run of a handler, as the handler itself recorded it."""

    job_id: str
    lock_token: str
    pid: int
    started_at: float
    finished_at: float | None
    locked_until: float
    """The end of the lease the claim took (renewals may have moved it: `lease_ends`)."""
    stopped_at: float | None = None
    """When the handler was cancelled (its lease was lost, or its worker stopped)."""


@attrs.frozen(kw_only=True)
class Outcome:
    """One result write a worker sent to the store (`completed`, `failed`, `pending`...)."""

    job_id: str
    lock_token: str
    pid: int
    kind: str
    applied: bool
    at: float


@attrs.frozen(kw_only=True)
class Renewal:
    """One lease renewal a worker sent: from `old_token` to `new_token`, until `locked_until`.

    `applied` is the store's answer: True renewed, False refused (the lease was lost),
    None no answer (the call failed, hung, or the worker died first).
    """

    job_id: str
    old_token: str
    new_token: str
    pid: int
    locked_until: float
    sent_at: float
    answered_at: float | None
    applied: bool | None


def _epoch(when: datetime) -> float:
    return when.timestamp()


class Ledger:
    """A SQLite file of executions and outcomes; safe to share between processes."""

    def __init__(self, path: str | Path, now: Callable[[], datetime] | None = None) -> None:
        self.path = Path(path)
        self._now = now
        self._conn: sqlite3.Connection | None = None

    def _clock(self) -> float:
        return _epoch(self._now()) if self._now is not None else time.time()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 30000")
            with contextlib.suppress(sqlite3.OperationalError):
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def started(self, job: Job) -> int:
        """Record that a handler began `job`; committed before this returns. The row id."""
        assert job.lock_token is not None
        assert job.locked_until is not None
        cur = self.conn.execute(
            "INSERT INTO executions (job_id, lock_token, pid, started_at, locked_until)"
            " VALUES (?, ?, ?, ?, ?)",
            (job.id, job.lock_token, os.getpid(), self._clock(), _epoch(job.locked_until)),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def finished(self, row: int) -> None:
        """Stamp the end of an execution (committed before the handler returns)."""
        self.conn.execute(
            "UPDATE executions SET finished_at = ? WHERE rowid = ?", (self._clock(), row)
        )

    def stopped(self, row: int) -> None:
        """Stamp that an execution was cancelled (committed before the handler ends)."""
        self.conn.execute(
            "UPDATE executions SET stopped_at = ? WHERE rowid = ?", (self._clock(), row)
        )

    def renewing(self, renewals: Sequence[JobUpdate]) -> list[int]:
        """Record renewals about to be sent, unanswered; their row ids."""
        rows = []
        for change in renewals:
            assert change.expected_lock_token is not None
            assert change.job.lock_token is not None
            assert change.job.locked_until is not None
            cur = self.conn.execute(
                "INSERT INTO renewals VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
                (
                    change.job.id,
                    change.expected_lock_token,
                    change.job.lock_token,
                    os.getpid(),
                    _epoch(change.job.locked_until),
                    self._clock(),
                ),
            )
            assert cur.lastrowid is not None
            rows.append(cur.lastrowid)
        return rows

    def renewed(self, rows: Sequence[int], results: Sequence[Job | None]) -> None:
        """Record the store's answers to the renewals of `rows`."""
        at = self._clock()
        for row, result in zip(rows, results, strict=True):
            self.conn.execute(
                "UPDATE renewals SET answered_at = ?, applied = ? WHERE rowid = ?",
                (at, int(result is not None), row),
            )

    def outcome(self, update: JobUpdate, applied: bool) -> None:
        """Record one guarded result write and whether the store applied it."""
        self.conn.execute(
            "INSERT INTO outcomes VALUES (?, ?, ?, ?, ?, ?)",
            (
                update.job.id,
                update.expected_lock_token or "",
                os.getpid(),
                update.job.status.value,
                int(applied),
                self._clock(),
            ),
        )

    def executions(self) -> list[Execution]:
        rows = self.conn.execute(
            "SELECT job_id, lock_token, pid, started_at, finished_at, locked_until, stopped_at"
            " FROM executions ORDER BY started_at, rowid"
        ).fetchall()
        return [
            Execution(
                job_id=r[0],
                lock_token=r[1],
                pid=r[2],
                started_at=r[3],
                finished_at=r[4],
                locked_until=r[5],
                stopped_at=r[6],
            )
            for r in rows
        ]

    def renewals(self) -> list[Renewal]:
        rows = self.conn.execute(
            "SELECT job_id, old_token, new_token, pid, locked_until, sent_at, answered_at,"
            " applied FROM renewals ORDER BY sent_at, rowid"
        ).fetchall()
        return [
            Renewal(
                job_id=r[0],
                old_token=r[1],
                new_token=r[2],
                pid=r[3],
                locked_until=r[4],
                sent_at=r[5],
                answered_at=r[6],
                applied=None if r[7] is None else bool(r[7]),
            )
            for r in rows
        ]

    def outcomes(self) -> list[Outcome]:
        rows = self.conn.execute(
            "SELECT job_id, lock_token, pid, kind, applied, at FROM outcomes ORDER BY at, rowid"
        ).fetchall()
        return [
            Outcome(job_id=r[0], lock_token=r[1], pid=r[2], kind=r[3], applied=bool(r[4]), at=r[5])
            for r in rows
        ]


class LedgerStore:
    """A `JobStore` proxy that records, in the ledger, every result write a worker makes.

    Only writes that move a job out of `processing` under a lock token are recorded
    (completions, failed attempts, releases): those are the worker's results. Lease
    renewals are recorded in a table of their own. Claims, rescues by the reaper and API
    writes pass through untouched.
    """

    def __init__(self, inner: JobStore, ledger: Ledger) -> None:
        self.inner = inner
        self.ledger = ledger

    async def insert(self, jobs: Sequence[Job]) -> Sequence[Job]:
        return await self.inner.insert(jobs)

    async def get(self, job_id: str) -> Job:
        return await self.inner.get(job_id)

    async def list(self, query: JobQuery) -> JobPage:
        return await self.inner.list(query)

    async def count_by_status(self) -> Mapping[JobStatus, int]:
        return await self.inner.count_by_status()

    async def claim(
        self,
        *,
        topics: Collection[str],
        now: datetime,
        lease: timedelta,
        limit: int,
        caps: Mapping[str, int] | None = None,
    ) -> Sequence[Job]:
        return await self.inner.claim(topics=topics, now=now, lease=lease, limit=limit, caps=caps)

    async def set_paused(self, topic: str, paused: bool) -> None:
        await self.inner.set_paused(topic, paused)

    async def set_max_running(self, topic: str, max_running: int | None) -> None:
        await self.inner.set_max_running(topic, max_running)

    async def topics(self) -> Sequence[TopicInfo]:
        return await self.inner.topics()

    async def expired(self, *, now: datetime, limit: int) -> Sequence[Job]:
        return await self.inner.expired(now=now, limit=limit)

    async def update(self, updates: Sequence[JobUpdate]) -> Sequence[bool]:
        flags = await self.inner.update(updates)
        for change, ok in zip(updates, flags, strict=True):
            if _is_result(change):
                self.ledger.outcome(change, ok)
        return flags

    async def renew(self, renewals: Sequence[JobUpdate]) -> Sequence[Job | None]:
        """Renew, recording each renewal before it is sent and the answer after (none
        if the call fails or never returns)."""
        rows = self.ledger.renewing(renewals)
        results = await self.inner.renew(renewals)
        self.ledger.renewed(rows, results)
        return results

    async def delete(self, job_id: str, *, expected_status: JobStatus) -> bool:
        return await self.inner.delete(job_id, expected_status=expected_status)

    async def delete_finished(
        self, *, statuses: Collection[JobStatus], before: datetime, limit: int
    ) -> int:
        return await self.inner.delete_finished(statuses=statuses, before=before, limit=limit)

    async def watch(self, on_new_work: Callable[[], None]) -> None:
        await self.inner.watch(on_new_work)

    async def close(self) -> None:
        await self.inner.close()


def _is_result(change: JobUpdate) -> bool:
    """A worker's report: from `processing` under a token, and not the reaper's "lock expired"."""
    return (
        change.expected_status is JobStatus.PROCESSING
        and change.expected_lock_token is not None
        and not (
            change.job.last_error == LOCK_EXPIRED and change.job.status is not JobStatus.COMPLETED
        )
    )


async def all_jobs(store: JobStore) -> list[Job]:
    """Every job in the store, read page by page."""
    jobs: list[Job] = []
    offset = 0
    while True:
        page = await store.list(JobQuery(limit=MAX_PAGE_SIZE, offset=offset))
        jobs.extend(page.items)
        offset += len(page.items)
        if not page.items or offset >= page.total:
            return jobs


@attrs.frozen(kw_only=True)
class Report:
    """What the checker found: violated invariants (empty = pass) and figures to print."""

    violations: list[str]
    figures: dict[str, Any]

    def assert_ok(self) -> None:
        assert not self.violations, "invariants broken:\n" + "\n".join(self.violations[:50])


def lease_chains(
    executions: Sequence[Execution], renewals: Sequence[Renewal]
) -> dict[tuple[str, str], dict[str, float]]:
    """Per run (job id, claim token): each token its lease may have had, with the end of
    the lease under it.

    The claim's token starts the chain; every renewal from a token in it that the store
    did not refuse adds its new token. A renewal without an answer counts: the store may
    have taken it (the strict view for a check that no other run started inside it).
    """
    links: dict[tuple[str, str], list[Renewal]] = defaultdict(list)
    for r in renewals:
        if r.applied is not False:
            links[r.job_id, r.old_token].append(r)
    chains: dict[tuple[str, str], dict[str, float]] = {}
    for e in executions:
        chain, todo = {e.lock_token: e.locked_until}, [e.lock_token]
        while todo:
            for r in links.get((e.job_id, todo.pop()), ()):
                if r.new_token not in chain:
                    todo.append(r.new_token)
                chain[r.new_token] = max(chain.get(r.new_token, 0.0), r.locked_until)
        chains[e.job_id, e.lock_token] = chain
    return chains


def lease_ends(
    executions: Sequence[Execution], renewals: Sequence[Renewal]
) -> dict[tuple[str, str], float]:
    """Per run (job id, claim token): the latest its lease may have been valid until,
    renewals included (see `lease_chains`)."""
    return {run: max(chain.values()) for run, chain in lease_chains(executions, renewals).items()}


def check(
    *,
    enqueued: Collection[str],
    jobs: Sequence[Job],
    stats: JobStats,
    executions: Sequence[Execution],
    outcomes: Sequence[Outcome],
    renewals: Sequence[Renewal] = (),
    kills: bool = False,
    require_terminal: bool = True,
) -> Report:
    """Assert-free check of I1-I6 over the final job table and the ledger.

    `renewals` extend the runs' leases for I3 (see `lease_ends`). `kills` says the run
    killed workers, so every `failed` job must have lost all of its attempts to expired
    leases (`lock expired`), one ledger row per attempt at least.
    """
    bad: list[str] = []
    by_id = {job.id: job for job in jobs}
    runs: dict[str, list[Execution]] = defaultdict(list)
    for e in executions:
        runs[e.job_id].append(e)

    # I1 nothing lost: every enqueued job exists and is terminal (completed, failed, cancelled).
    missing = [i for i in enqueued if i not in by_id]
    if missing:
        bad.append(f"I1: {len(missing)} enqueued jobs are gone, e.g. {missing[:3]}")
    unfinished = [j.id for j in jobs if j.status not in FINAL_STATUSES]
    if require_terminal and unfinished:
        bad.append(f"I1: {len(unfinished)} jobs not terminal, e.g. {unfinished[:3]}")

    # I2 single effective completion, by the token of an execution that returned.
    effective: dict[str, list[Outcome]] = defaultdict(list)
    refused = 0
    for o in outcomes:
        if o.kind == JobStatus.COMPLETED.value:
            if o.applied:
                effective[o.job_id].append(o)
            else:
                refused += 1
    doubles = {k: v for k, v in effective.items() if len(v) > 1}
    if doubles:
        bad.append(f"I2: {len(doubles)} jobs completed more than once: {list(doubles)[:3]}")
    chains = lease_chains(executions, renewals)
    returned = {
        (e.job_id, token)
        for e in executions
        if e.finished_at is not None
        for token in chains[e.job_id, e.lock_token]
    }
    for job_id, done in effective.items():
        if (job_id, done[0].lock_token) not in returned:
            bad.append(f"I2: {job_id} completed under {done[0].lock_token}, no run returned")
        if job_id in by_id and by_id[job_id].status is not JobStatus.COMPLETED:
            bad.append(f"I2: {job_id} had its completion applied but is {by_id[job_id].status}")
    for job in jobs:
        if job.status is JobStatus.COMPLETED and not any(
            e.finished_at is not None for e in runs.get(job.id, [])
        ):
            bad.append(f"I2: {job.id} is completed but no execution of it returned")

    # I3 no overlap inside a valid lock; no lock token handed out twice.
    overlaps = 0
    valid_until = {run: max(chain.values()) for run, chain in chains.items()}
    tokens = Counter((e.job_id, e.lock_token) for e in executions)
    dup_tokens = [k for k, n in tokens.items() if n > 1]
    if dup_tokens:
        bad.append(f"I3: {len(dup_tokens)} (job, token) pairs ran twice: {dup_tokens[:3]}")
    for job_id, tries in runs.items():
        for before, after in itertools.pairwise(tries):
            held_until = valid_until[job_id, before.lock_token]
            if after.started_at < held_until:
                overlaps += 1
                bad.append(
                    f"I3: {job_id} started again at {after.started_at:.3f} while the lock"
                    f" {before.lock_token[:8]} held until {held_until:.3f}"
                )

    # I4 bounded attempts, I5 failures explained.
    for job in jobs:
        attempts = len(runs.get(job.id, []))
        if attempts > 1 + job.max_retries:
            bad.append(f"I4: {job.id} ran {attempts} times (max {1 + job.max_retries})")
        if job.status is JobStatus.FAILED:
            if job.retries != job.max_retries or not job.last_error:
                bad.append(f"I5: failed {job.id} has retries={job.retries}, {job.last_error!r}")
            if kills and (job.last_error != LOCK_EXPIRED or attempts < 1 + job.max_retries):
                bad.append(
                    f"I5: failed {job.id} did not lose every attempt to a kill"
                    f" ({attempts} runs, {job.last_error!r})"
                )

    # I6 counters consistent with the rows.
    bad.extend(counters_consistent(jobs, stats))
    counted = Counter(job.status for job in jobs)

    figures = {
        "jobs": len(enqueued),
        "completed": counted[JobStatus.COMPLETED],
        "failed": counted[JobStatus.FAILED],
        "cancelled": counted[JobStatus.CANCELLED],
        "not_terminal": len(unfinished),
        "lost": len(missing),
        "executions": len(executions),
        "re_executions": len(executions) - len(runs),
        "overlaps_in_valid_lock": overlaps,
        "double_completions": len(doubles),
        "stale_results_refused": refused,
        "max_attempts": max((len(v) for v in runs.values()), default=0),
    }
    return Report(violations=bad, figures=figures)


async def check_run(enqueued: Collection[str], jobs: Jobs, ledger: Ledger) -> Report:
    """`check` a finished run: every job in the store, its counts, and the ledger."""
    return check(
        enqueued=enqueued,
        jobs=await all_jobs(jobs.store),
        stats=await jobs.stats(),
        executions=ledger.executions(),
        outcomes=ledger.outcomes(),
        renewals=ledger.renewals(),
    )


def counters_consistent(jobs: Sequence[Job], stats: JobStats) -> list[str]:
    """I6: `stats()` equals the counts of the rows, and its success rate adds up."""
    bad = []
    expected = JobStats.from_counts(Counter(job.status for job in jobs))
    if stats != expected:
        bad.append(f"I6: stats() {stats} but the rows say {expected}")
    finished = stats.completed + stats.failed
    if finished and abs(stats.success_rate - stats.completed / finished) > 1e-9:
        bad.append(f"I6: success_rate {stats.success_rate} != completed/(completed+failed)")
    return bad
