"""The store's operations as plain synchronous functions, one whole port call each.

Each runs its own transaction with as few statements as it can; `SQLiteStore` runs
each on its dedicated thread, so a port call costs one thread hop however many
statements it runs. The hot ones (insert, claim, guarded update) take a `Session` and
run the fixed SQL of `_statements`; the rest use SQLAlchemy Core on the connection.
Writers always begin with `BEGIN IMMEDIATE`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Connection,
    LargeBinary,
    Select,
    and_,
    cast,
    delete,
    func,
    insert,
    literal_column,
    select,
    true,
)

from jobs_core import Job, JobPage, JobQuery, JobStatus, JobUpdate, rows_within_budget
from jobs_sqlite import _statements as sql
from jobs_sqlite._engine import read_transaction, write_transaction
from jobs_sqlite._rows import (
    COLUMNS,
    TimeTexts,
    format_time,
    from_row,
    from_rows,
    guarded_values,
    insert_values,
    to_row,
)
from jobs_sqlite._schema import jobs_table
from jobs_sqlite._sessions import Session

_t = jobs_table.c
_ALL: Final = [_t[name] for name in COLUMNS]
#: `_ALL` with the JSON text `null` in place of the payload, which is then never read.
_WITHOUT_PAYLOAD: Final = [
    literal_column("'null'").label("payload") if name == "payload" else _t[name] for name in COLUMNS
]
_payload_bytes: Final = func.length(cast(_t.payload, LargeBinary))
_PROCESSING: Final = JobStatus.PROCESSING.value


def insert_jobs(connection: Connection, jobs: Sequence[Job]) -> None:
    """INSERT the jobs on `connection`, in whatever transaction it is in."""
    if jobs:
        connection.execute(insert(jobs_table), [to_row(job) for job in jobs])


def insert_all(session: Session, texts: TimeTexts, jobs: Sequence[Job]) -> None:
    """Store new jobs in one transaction: all or none."""
    text = texts.text
    rows = [insert_values(job, text) for job in jobs]
    with session.write():
        session.change_many(sql.INSERT, rows)


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
    limit = max(query.limit, 0)
    budget = query.max_payload_bytes if query.payloads else None

    def newest_first(*columns: ColumnElement[Any], rows: int) -> Select[Any]:
        return (
            select(*columns)
            .where(where)
            .order_by(_t.created.desc(), _t.id.desc())
            .limit(rows)
            .offset(max(query.offset, 0))
        )

    with read_transaction(connection):
        total = connection.scalar(select(func.count()).select_from(jobs_table).where(where))
        fitting = limit
        if budget is not None:
            # Sizes first (bytes of the stored text), so rows past the budget are never read.
            sizes = connection.scalars(newest_first(_payload_bytes, rows=limit)).all()
            fitting = rows_within_budget(sizes, budget)
            truncated = fitting < len(sizes)
        rows = connection.execute(
            newest_first(*(_ALL if query.payloads else _WITHOUT_PAYLOAD), rows=fitting)
        ).all()
    if budget is None:
        truncated = False
    return JobPage(
        items=from_rows(rows, path),
        total=int(total or 0),
        limit=query.limit,
        offset=query.offset,
        payloads=query.payloads,
        truncated=truncated,
    )


def count_by_status(connection: Connection) -> Mapping[JobStatus, int]:
    """Counts per status (every status present, zero when none)."""
    counts = dict.fromkeys(JobStatus, 0)
    with read_transaction(connection):
        rows = connection.execute(select(_t.status, func.count()).group_by(_t.status)).all()
    for status, count in rows:
        counts[JobStatus(status)] = int(count)
    return counts


def claim(
    session: Session,
    path: str,
    texts: TimeTexts,
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
    stamp = format_time(now)
    params = [format_time(now + lease), stamp, stamp, *wanted, limit]
    with session.write():
        rows = session.fetch(sql.claim(len(wanted)), params)
    jobs = from_rows(rows, path, texts)
    jobs.sort(key=_claim_order)
    return jobs


def _claim_order(job: Job) -> tuple[datetime, str]:
    return job.run_at, job.id


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
    return from_rows(rows, path)


class _NotAllApplied(Exception):
    """Some guarded write of a batch was refused: roll back, redo it row by row."""


def apply_updates(session: Session, texts: TimeTexts, updates: Sequence[JobUpdate]) -> list[bool]:
    """Compare-and-set each update in one transaction; a flag per update, in order.

    The common case (every guard holds) is one `executemany`, which reports only the
    total of rows changed: each statement changes at most its one row, so a total equal
    to the batch size means every write applied. Otherwise that transaction is rolled
    back and the batch redone one statement at a time, in order (a job may appear more
    than once), to learn which writes were refused.
    """
    if not updates:
        return []
    text = texts.text
    rows = [guarded_values(change, text) for change in updates]
    try:
        with session.write():
            if session.change_many(sql.GUARDED_UPDATE, rows) != len(rows):
                raise _NotAllApplied
            return [True] * len(rows)
    except _NotAllApplied:
        pass
    with session.write():
        return [session.change(sql.GUARDED_UPDATE, row) == 1 for row in rows]


def delete_job(connection: Connection, job_id: str, expected_status: JobStatus) -> bool:
    """Delete the job if it is still in `expected_status`."""
    statement = delete(jobs_table).where(
        _t.id == job_id, _t.status == JobStatus(expected_status).value
    )
    with write_transaction(connection):
        return connection.execute(statement).rowcount == 1
