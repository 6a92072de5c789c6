"""The store's operations as plain synchronous functions over one SQLAlchemy connection.

Each function is one whole port call: its own transaction, as few statements as it can.
`SQLiteStore` runs each on its dedicated thread, so a port call costs one thread hop
however many statements it runs. Writers use `write_transaction` (`BEGIN IMMEDIATE`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    Connection,
    Update,
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    true,
    update,
)

from jobs_core import Job, JobPage, JobQuery, JobStatus, JobUpdate
from jobs_sqlite._engine import read_transaction, write_transaction
from jobs_sqlite._rows import COLUMNS, format_time, from_row, mutable_values, to_row
from jobs_sqlite._schema import jobs_table

_t = jobs_table.c
_ALL: Final = [_t[name] for name in COLUMNS]
_PENDING: Final = JobStatus.PENDING.value
_PROCESSING: Final = JobStatus.PROCESSING.value

#: A fresh random fencing token per claimed row, made by SQLite inside the UPDATE.
_NEW_TOKEN: Final = func.lower(func.hex(func.randomblob(16)))

_GUARDED_UPDATE: Final = (
    update(jobs_table)
    .where(
        _t.id == bindparam("b_id"),
        _t.status == bindparam("b_status"),
        _t.lock_token.is_not_distinct_from(bindparam("b_token")),
    )
    .values(
        status=bindparam("status"),
        run_at=bindparam("run_at"),
        locked_until=bindparam("locked_until"),
        lock_token=bindparam("lock_token"),
        retries=bindparam("retries"),
        last_error=bindparam("last_error"),
        updated=bindparam("updated"),
    )
)


def insert_jobs(connection: Connection, jobs: Sequence[Job]) -> None:
    """INSERT the jobs on `connection`, in whatever transaction it is in."""
    if jobs:
        connection.execute(insert(jobs_table), [to_row(job) for job in jobs])


def insert_all(connection: Connection, jobs: Sequence[Job]) -> None:
    """Store new jobs in one transaction: all or none."""
    with write_transaction(connection):
        insert_jobs(connection, jobs)


def get(connection: Connection, path: str, job_id: str) -> Job | None:
    """The job, or None."""
    with read_transaction(connection):
        row = connection.execute(select(*_ALL).where(_t.id == job_id)).first()
    return None if row is None else from_row(row, path)


def list_jobs(connection: Connection, path: str, query: JobQuery) -> JobPage:
    """A page newest first, and the total, from one snapshot."""
    conditions = []
    if query.topic is not None:
        conditions.append(_t.topic == query.topic)
    if query.status is not None:
        conditions.append(_t.status == JobStatus(query.status).value)
    where = and_(true(), *conditions)
    page = (
        select(*_ALL)
        .where(where)
        .order_by(_t.created.desc(), _t.id.desc())
        .limit(max(query.limit, 0))
        .offset(max(query.offset, 0))
    )
    with read_transaction(connection):
        total = connection.scalar(select(func.count()).select_from(jobs_table).where(where))
        rows = connection.execute(page).all()
    items = [from_row(row, path) for row in rows]
    return JobPage(items=items, total=int(total or 0), limit=query.limit, offset=query.offset)


def count_by_status(connection: Connection) -> Mapping[JobStatus, int]:
    """Counts per status (every status present, zero when none)."""
    counts = dict.fromkeys(JobStatus, 0)
    with read_transaction(connection):
        rows = connection.execute(select(_t.status, func.count()).group_by(_t.status)).all()
    for status, count in rows:
        counts[JobStatus(status)] = int(count)
    return counts


def _claim_statement() -> Update:
    due = (
        select(_t.id)
        .where(
            _t.status == _PENDING,
            _t.run_at <= bindparam("now"),
            _t.topic.in_(bindparam("topics", expanding=True)),
        )
        .order_by(_t.run_at, _t.id)
        .limit(bindparam("limit"))
        .scalar_subquery()
    )
    return (
        update(jobs_table)
        # `status || ''` keeps the planner on the primary key for `id IN (...)` rather
        # than scanning every pending row through the status index.
        .where(_t.id.in_(due), _t.status.concat("") == _PENDING)
        .values(
            status=_PROCESSING,
            locked_until=bindparam("locked_until"),
            lock_token=_NEW_TOKEN,
            updated=bindparam("now"),
        )
        .returning(*_ALL)
    )


_CLAIM: Final = _claim_statement()


def claim(
    connection: Connection,
    path: str,
    *,
    topics: Collection[str],
    now: datetime,
    lease: timedelta,
    limit: int,
) -> list[Job]:
    """Lease up to `limit` due pending jobs in (`run_at`, `id`) order, in one UPDATE.

    The UPDATE re-checks `status = 'pending'` on each row it changes (compare-and-set),
    and `BEGIN IMMEDIATE` makes the pick and the write one step for every process.
    """
    wanted = list(dict.fromkeys(topics))
    if not wanted or limit <= 0:
        return []
    params = {
        "now": format_time(now),
        "topics": wanted,
        "limit": limit,
        "locked_until": format_time(now + lease),
    }
    with write_transaction(connection):
        rows = connection.execute(_CLAIM, params).all()
    jobs = [from_row(row, path) for row in rows]
    jobs.sort(key=lambda job: (job.run_at, job.id))
    return jobs


def expired(connection: Connection, path: str, *, now: datetime, limit: int) -> list[Job]:
    """Processing jobs whose lease ran out (`locked_until < now`), oldest lease first."""
    if limit <= 0:
        return []
    statement = (
        select(*_ALL)
        .where(_t.status == _PROCESSING, _t.locked_until < format_time(now))
        .order_by(_t.locked_until, _t.id)
        .limit(limit)
    )
    with read_transaction(connection):
        rows = connection.execute(statement).all()
    return [from_row(row, path) for row in rows]


def apply_updates(connection: Connection, updates: Sequence[JobUpdate]) -> list[bool]:
    """Compare-and-set each update in one transaction; a flag per update, in order."""
    if not updates:
        return []
    params: list[dict[str, Any]] = []
    for change in updates:
        values = mutable_values(change.job)
        values["b_id"] = change.job.id
        values["b_status"] = JobStatus(change.expected_status).value
        values["b_token"] = change.expected_lock_token
        params.append(values)
    flags = []
    with write_transaction(connection):
        for values in params:
            flags.append(connection.execute(_GUARDED_UPDATE, values).rowcount == 1)
    return flags


def delete_job(connection: Connection, job_id: str, expected_status: JobStatus) -> bool:
    """Delete the job if it is still in `expected_status`."""
    statement = delete(jobs_table).where(
        _t.id == job_id, _t.status == JobStatus(expected_status).value
    )
    with write_transaction(connection):
        return connection.execute(statement).rowcount == 1
