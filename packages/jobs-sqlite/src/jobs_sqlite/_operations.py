"""The store's operations as plain synchronous functions, one whole port call each.

Each runs its own transaction with as few statements as it can; `SQLiteStore` runs
each on its dedicated thread, so a port call costs one thread hop however many
statements it runs. The hot ones (insert, claim, guarded update, renewal) take a `Session` and
run the fixed SQL of `_statements`; the rest use SQLAlchemy Core on the connection.
Writers always begin with `BEGIN IMMEDIATE`.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, delete, insert

from jobs_core import (
    GIVEN_UP_STATUS,
    LEASED_STATUSES,
    Job,
    JobPage,
    JobQuery,
    JobStatus,
    JobUpdate,
    TopicInfo,
    TopicPolicy,
    UniqueKeyTaken,
    UnreadableJob,
    claim_allowances,
    claim_order_key,
    rows_within_budget,
    topic_infos,
)
from jobs_sqlite import _statements as sql
from jobs_sqlite._engine import write_transaction
from jobs_sqlite._rows import (
    COLUMNS,
    TimeTexts,
    completion_values,
    decode_each,
    format_time,
    from_row,
    from_rows,
    guarded_values,
    insert_values,
    parse_time,
    renew_values,
    to_row,
)
from jobs_sqlite._schema import jobs_table
from jobs_sqlite._sessions import Session

log = logging.getLogger("jobs_sqlite")
_t = jobs_table.c
_ALL: Final = [_t[name] for name in COLUMNS]


def insert_jobs(connection: Connection, jobs: Sequence[Job]) -> None:
    """INSERT the jobs on `connection`, in whatever transaction it is in."""
    if jobs:
        connection.execute(insert(jobs_table), [to_row(job) for job in jobs])


def insert_all(session: Session, path: str, texts: TimeTexts, jobs: Sequence[Job]) -> list[Job]:
    """Store new jobs in one transaction, all or none; per job, the job holding its
    place (itself, or the active job that already held its unique key)."""
    text = texts.text
    rows = [insert_values(job, text) for job in jobs]
    if all(job.unique_key is None for job in jobs):
        with session.write():
            session.change_many(sql.INSERT, rows)
        return list(jobs)
    answer = []
    with session.write():  # BEGIN IMMEDIATE: no writer between the insert and the read
        for job, row in zip(jobs, rows, strict=True):
            if job.unique_key is None:
                session.change(sql.INSERT, row)
            elif session.change(sql.INSERT_UNIQUE, row) == 0:  # the key is held
                (held,) = session.fetch(sql.HOLDER, (job.topic, job.unique_key))
                answer.append(from_row(held, path))
                continue
            answer.append(job)
    return answer


def get(session: Session, path: str, job_id: str) -> Job | None:
    """The job, or None."""
    with session.read():
        rows = session.fetch(sql.GET, [job_id])
    return from_row(rows[0], path) if rows else None


def list_jobs(session: Session, path: str, query: JobQuery) -> JobPage:
    """A page newest first, and the total, from one snapshot."""
    total, rows, truncated = list_rows(session, query)
    return page_of(total, rows, truncated, path, query)


def page_of(
    total: int, rows: Sequence[Sequence[Any]], truncated: bool, path: str, query: JobQuery
) -> JobPage:
    """The `JobPage` of `list_rows`' answer."""
    return JobPage(
        items=from_rows(rows, path),
        total=total,
        limit=query.limit,
        offset=query.offset,
        payloads=query.payloads,
        truncated=truncated,
    )


def list_rows(session: Session, query: JobQuery) -> tuple[int, list[Any], bool]:
    """The total, the page's rows (not yet `Job`s) and whether the page's payload byte
    budget cut it short of its limit, from one snapshot."""
    filters: list[object] = []
    if query.topic is not None:
        filters.append(query.topic)
    if query.status is not None:
        filters.append(JobStatus(query.status).value)
    total_sql, page_sql, sizes_sql = sql.list_page(
        query.topic is not None, query.status is not None, query.payloads
    )
    limit, offset = max(query.limit, 0), max(query.offset, 0)
    budget = query.max_payload_bytes if query.payloads else None
    truncated = False
    with session.read():
        ((total,),) = session.fetch(total_sql, filters)
        if budget is not None:
            sizes = [size for (size,) in session.fetch(sizes_sql, [*filters, limit, offset])]
            fitting = rows_within_budget(sizes, budget)
            truncated, limit = fitting < len(sizes), fitting
        rows = session.fetch(page_sql, [*filters, limit, offset]) if limit else []
    return int(total), rows, truncated


def count_by_status(session: Session) -> Mapping[JobStatus, int]:
    """Counts per status (every status present, zero when none), in one snapshot.

    SQLite counts a whole table far faster than an index range (it counts b-tree cells
    without reading them: ~14 ms against ~51 ms for 1M rows), so the most common status
    of a long-lived queue (`sql.REMAINDER`, completed) is the total less the others,
    each counted on its range of the claim index.
    """
    with session.read():
        ((total, *others),) = session.fetch(sql.COUNTS, ())
    counts = dict(zip(sql.COUNTED, (int(n) for n in others), strict=True))
    if sql.REMAINDER is not None:
        counts[sql.REMAINDER] = int(total) - sum(counts.values())
    return {status: counts[status] for status in JobStatus}


def claim(
    session: Session,
    path: str,
    texts: TimeTexts,
    *,
    topics: Collection[str],
    now: datetime,
    lease: timedelta,
    limit: int,
    caps: Mapping[str, int] | None = None,
) -> list[Job]:
    """Lease up to `limit` due pending jobs in `CLAIM_ORDER`, in one UPDATE, each topic
    within its allowance.

    The same write transaction first reads the claimed topics' policies (none in the
    common case: then the plain `claim` runs) and, for limited topics, counts their
    processing rows: `BEGIN IMMEDIATE` serialises every process's claims, so no two
    claims see the same count. The UPDATE re-checks `status = 'pending'` on each row
    it changes (compare-and-set).
    """
    wanted = list(dict.fromkeys(topics))
    if not wanted or limit <= 0:
        return []
    stamp = format_time(now)
    head = [format_time(now + lease), stamp]
    with session.write():
        held = session.fetch(sql.policies(len(wanted)), wanted)
        if not held and not caps:
            rows = session.fetch(sql.claim(len(wanted)), [*head, stamp, *wanted, limit])
        else:
            rules = {
                topic: TopicPolicy(topic=topic, paused=bool(paused), max_running=max_running)
                for topic, paused, max_running in held
            }
            limited = [t for t, p in rules.items() if p.max_running is not None and not p.paused]
            running = (
                {topic: int(n) for topic, n in session.fetch(sql.running(len(limited)), limited)}
                if limited
                else {}
            )
            allowed = claim_allowances(
                wanted, limit=limit, policies=rules, running=running, caps=caps
            )
            if not allowed:
                return []
            branches = [value for topic, n in allowed.items() for value in (stamp, topic, n)]
            rows = session.fetch(sql.claim_within(len(allowed)), [*head, *branches, limit])
        jobs, bad = decode_each(rows, path, texts)
        for row, error in bad:  # in the claim's own transaction: never left `processing`
            session.change(_QUARANTINE_SQL, quarantine_values(row, error, now))
    log_quarantined(bad)
    jobs.sort(key=claim_order_key)
    return jobs


def set_policy(session: Session, topic: str, paused: bool | None, max_running: int | None) -> None:
    """Store one setting of `topic` (`paused` if not None, else `max_running`); a row
    back at the defaults is dropped. One write transaction."""
    with session.write():
        if paused is not None:
            session.change(sql.SET_PAUSED, (topic, int(paused)))
        else:
            session.change(sql.SET_MAX_RUNNING, (topic, max_running))
        session.change(sql.DROP_DEFAULT_POLICY, (topic,))


def topics(session: Session) -> list[TopicInfo]:
    """Every topic with jobs or a policy, by name, from one snapshot."""
    with session.read():
        counted = session.fetch(sql.TOPIC_COUNTS, ())
        held = session.fetch(sql.ALL_POLICIES, ())
    return topic_infos(
        (
            (t, status, n, None if run_at is None else parse_time(run_at))
            for t, status, n, run_at in counted
        ),
        (TopicPolicy(topic=t, paused=bool(p), max_running=m) for t, p, m in held),
    )


#: Move a leased row that cannot be read to `failed`, guarded by its status and lease
#: token as read; its times are reset to valid ones (the old values are named in
#: `last_error`).
_QUARANTINE_SQL: Final = (
    f"UPDATE jobs SET status = '{GIVEN_UP_STATUS}', run_at = ?, locked_until = NULL,"  # noqa: S608
    " lock_token = NULL, last_error = ?, updated = ? WHERE id = ? AND status = ?"
    " AND lock_token IS ?"
)


def quarantine_values(row: Sequence[Any], error: UnreadableJob, now: datetime) -> tuple[Any, ...]:
    """The `_QUARANTINE_SQL` parameters for `row` (columns in `COLUMNS` order)."""
    values = dict(zip(COLUMNS, row, strict=False))
    stamp = format_time(now)
    guard = (values["id"], values["status"], values["lock_token"])
    return (stamp, error.failed_reason, stamp, *guard)


Unreadable = tuple[Sequence[Any], UnreadableJob]


def quarantine(connection: Connection, now: datetime, bad: Sequence[Unreadable]) -> None:
    """Move unreadable expired rows to `failed` (see `_QUARANTINE_SQL`), one transaction."""
    with write_transaction(connection):
        for row, error in bad:
            connection.exec_driver_sql(_QUARANTINE_SQL, quarantine_values(row, error, now))


def log_quarantined(bad: Sequence[Unreadable]) -> None:
    """Report each unreadable row moved to `failed`, by job id."""
    for _, error in bad:
        log.error("%s; moved to failed", error)


def expired(
    session: Session, path: str, *, now: datetime, limit: int
) -> tuple[list[Job], list[Unreadable]]:
    """Processing jobs whose lease ran out (`locked_until < now`), oldest lease first; and
    the rows among them that cannot be read, for `quarantine`."""
    if limit <= 0:
        return [], []
    with session.read():
        rows = session.fetch(sql.EXPIRED, [format_time(now), limit])
    return decode_each(rows, path)


class _NotAllApplied(Exception):
    """Some guarded write of a batch was refused: roll back, redo it row by row."""


def apply_updates(
    session: Session, path: str, texts: TimeTexts, updates: Sequence[JobUpdate]
) -> list[bool]:
    """Compare-and-set each update in one transaction; a flag per update, in order.

    The common case (every guard holds) is one statement: a batch of completions is one
    `complete_all`, anything else one `executemany`; both report only the total of rows
    changed, and each row of parameters changes at most its one row, so a total equal to
    the batch size means every write applied. Otherwise that transaction is rolled back
    and the batch redone one statement at a time, in order (a job may appear more than
    once), to learn which writes were refused.
    """
    if not updates:
        return []
    text = texts.text
    try:
        with session.write():
            if len(updates) <= sql.COMPLETE_ALL_MAX and all(map(_is_completion, updates)):
                rows = [completion_values(change, text) for change in updates]
                changed = session.change(sql.complete_all(len(rows)), _flat(rows))
            else:
                changed = session.change_many(
                    sql.GUARDED_UPDATE, [guarded_values(change, text) for change in updates]
                )
            if changed != len(updates):
                raise _NotAllApplied
            return [True] * len(updates)
    except _NotAllApplied:
        pass
    except sqlite3.IntegrityError:
        pass  # a requeue over a held unique key: the row-by-row round names it
    with session.write():
        return [_guarded(session, path, change, text) for change in updates]


def _guarded(
    session: Session, path: str, change: JobUpdate, text: Callable[[datetime], str]
) -> bool:
    """One guarded write inside the caller's transaction; `UniqueKeyTaken` (rolling the
    transaction back) when it would make a second active job hold a unique key."""
    try:
        return session.change(*_one_write(change, text)) == 1
    except sqlite3.IntegrityError:
        job = change.job
        if job.unique_key is None:
            raise
        held = session.fetch(sql.HOLDER, (job.topic, job.unique_key))
        holder = from_row(held[0], path).id if held else None
        raise UniqueKeyTaken(job.id, job.topic, job.unique_key, holder) from None


def _is_completion(change: JobUpdate) -> bool:
    """Whether `change` completes a leased job (`COMPLETE_FIELDS` say all it writes)."""
    return (
        change.job.status is JobStatus.COMPLETED
        and change.expected_status in LEASED_STATUSES
        and change.expected_lock_token is not None
    )


def _one_write(change: JobUpdate, text: Callable[[datetime], str]) -> tuple[str, tuple[Any, ...]]:
    """The statement and parameters of `change` alone."""
    if _is_completion(change):
        return sql.complete_all(1), completion_values(change, text)
    return sql.GUARDED_UPDATE, guarded_values(change, text)


def _flat(rows: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    return tuple(value for row in rows for value in row)


def renew(
    session: Session, path: str, texts: TimeTexts, renewals: Sequence[JobUpdate]
) -> list[Job | None]:
    """Renew each lease in one transaction, in order; per renewal the row as stored
    after it, or None when its guard failed.

    One `UPDATE ... RETURNING` per renewal (sqlite3's `executemany` returns no rows). A
    renewed row that cannot be read is handled as a claim handles one: moved to `failed`
    in the same transaction (guarded by the new token), logged, and reported as a lost
    lease, so the worker stops holding a job nobody can read.
    """
    text = texts.text
    renewed: list[Job | None] = []
    unreadable: list[Unreadable] = []
    with session.write():
        for change in renewals:
            jobs, bad = decode_each(
                session.fetch(sql.RENEW, renew_values(change, text)), path, texts
            )
            renewed.append(jobs[0] if jobs else None)
            for row, error in bad:
                session.change(_QUARANTINE_SQL, quarantine_values(row, error, change.job.updated))
            unreadable += bad
    log_quarantined(unreadable)
    return renewed


def delete_job(connection: Connection, job_id: str, expected_status: JobStatus) -> bool:
    """Delete the job if it is still in `expected_status`."""
    statement = delete(jobs_table).where(
        _t.id == job_id, _t.status == JobStatus(expected_status).value
    )
    with write_transaction(connection):
        return connection.execute(statement).rowcount == 1


def delete_finished(
    connection: Connection, statuses: tuple[JobStatus, ...], before: datetime, limit: int
) -> int:
    """Delete up to `limit` of the oldest final jobs updated before `before`, in one
    statement and transaction; how many went. Arguments were checked by the store."""
    with write_transaction(connection):
        result = connection.exec_driver_sql(
            sql.delete_finished(statuses), (format_time(before), limit)
        )
        return int(result.rowcount)
