"""SQL text of the hot statements (insert, claim, guarded update, lease renewal), built
once at import.

Plain `?` parameters, so the same text runs on the sqlite3 cursor or through
SQLAlchemy's `exec_driver_sql` (see `_sessions`). Column order is `_rows.COLUMNS`; the
column lists come from the job schema (`MUTABLE_FIELDS`, `CLAIM_FIELDS`, `RENEW_FIELDS`,
`COMPLETE_FIELDS`),
the claim's order from `CLAIM_ORDER` and the counts from `JobStatus`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from jobs_core import (
    ACTIVE_STATUSES,
    BULKY_FIELDS,
    CLAIM_FIELDS,
    CLAIM_ORDER,
    CLAIMABLE_STATUSES,
    COMPLETE_FIELDS,
    EXPIRED_ORDER,
    FINAL_STATUSES,
    LEASED_STATUSES,
    MUTABLE_FIELDS,
    RENEW_FIELDS,
    REQUEST_FIELDS,
    REQUEUEABLE_STATUSES,
    JobStatus,
)
from jobs_sqlite._rows import COLUMNS, unread_literal

_ALL: Final = ", ".join(COLUMNS)
# The lifecycle's sets, each of one status today, compiled into the SQL as literals (so
# the partial-index planner sees them). A second status in a set fails here, at import:
# the statements below would then need `IN (...)`.
(_CLAIMABLE,) = (status.value for status in CLAIMABLE_STATUSES)
(_LEASED,) = (status.value for status in LEASED_STATUSES)

#: A whole new job; parameters are `_rows.insert_values`.
INSERT: Final = f"INSERT INTO jobs ({_ALL}) VALUES ({', '.join(['?'] * len(COLUMNS))})"  # noqa: S608

#: Where a job holds its unique key: the partial unique index's predicate (the same
#: text in the index, `_schema` and `_migrations`, so the ON CONFLICT target matches it).
HELD_KEY: Final = (
    "unique_key IS NOT NULL AND status IN"
    f" ({', '.join(repr(s.value) for s in JobStatus if s in ACTIVE_STATUSES)})"
)

#: A new job with a unique key: stored unless an active job of its topic holds the key
#: (then nothing happens and the row count is 0); parameters as `INSERT`'s.
INSERT_UNIQUE: Final = f"{INSERT} ON CONFLICT (topic, unique_key) WHERE {HELD_KEY} DO NOTHING"

#: The job holding a topic's unique key; parameters: topic, unique_key.
HOLDER: Final = f"SELECT {_ALL} FROM jobs WHERE topic = ? AND unique_key = ? AND {HELD_KEY}"  # noqa: S608

#: Compare-and-set of one job; parameters are `_rows.guarded_values`.
GUARDED_UPDATE: Final = (
    f"UPDATE jobs SET {', '.join(f'{name} = ?' for name in MUTABLE_FIELDS)}"  # noqa: S608
    " WHERE id = ? AND status = ? AND lock_token IS ?"
    # A write that would drop a request made since its writer read the job is refused
    # (`jobs_core.REQUEST_FIELDS`); the last parameter is `overrides_requests`.
    f" AND (({' AND '.join(f'{name} IS NULL' for name in REQUEST_FIELDS)}) OR ?)"
)

#: Most rows one `complete_all` statement writes (its parameters stay far below SQLite's
#: limit of variables).
COMPLETE_ALL_MAX: Final = 64


@lru_cache(maxsize=COMPLETE_ALL_MAX)
def complete_all(count: int) -> str:
    """The completion of `count` leased jobs in one statement; each row of parameters is
    `_rows.completion_values`. Writes only `COMPLETE_FIELDS`, joining the rows on id and
    lock token (a completion wins over a cancel request: no guard on it): the
    number of rows changed is `count` exactly when every lease still held (a job given
    twice matches once)."""
    width = len(COMPLETE_FIELDS) + 2
    row = f"({', '.join(['?'] * width)})"
    sets = ", ".join(f"{name} = v.column{i}" for i, name in enumerate(COMPLETE_FIELDS, 1))
    return (
        f"UPDATE jobs SET {sets} FROM (VALUES {', '.join([row] * count)}) AS v"  # noqa: S608
        f" WHERE jobs.id = v.column{width - 1} AND jobs.status = '{_LEASED}'"
        f" AND jobs.lock_token = v.column{width}"
    )


#: A lease renewal of one job, returning the row as stored after it; parameters are
#: `_rows.renew_values`. The guard also accepts the renewal's own new token, so a
#: renewal that already applied applies again (the same values) and answers the row.
RENEW: Final = (
    f"UPDATE jobs SET {', '.join(f'{name} = ?' for name in RENEW_FIELDS)}"  # noqa: S608
    " WHERE id = ? AND status = ? AND (lock_token IS ? OR lock_token IS ?)"
    f" RETURNING {_ALL}"
)


#: One whole job by id.
GET: Final = f"SELECT {_ALL} FROM jobs WHERE id = ?"  # noqa: S608

#: Leased jobs whose lease ran out, in `EXPIRED_ORDER`; parameters: now, limit.
EXPIRED: Final = (
    f"SELECT {_ALL} FROM jobs WHERE status = '{_LEASED}' AND locked_until < ?"  # noqa: S608
    f" ORDER BY {', '.join(EXPIRED_ORDER)} LIMIT ?"
)


#: `_ALL` with constants in place of the bulky columns (`BULKY_FIELDS`: the payload, the
#: history, the result), which are then never read: each as it stores its unread value.
_ALL_BUT_BULKY: Final = ", ".join(
    f"{unread_literal(name)} AS {name}" if name in BULKY_FIELDS else name for name in COLUMNS
)
#: The bytes of a row's bulky columns' stored JSON text (a NULL counts none).
_BULKY_BYTES: Final = " + ".join(
    f"coalesce(length(CAST({name} AS BLOB)), 0)" for name in BULKY_FIELDS
)


@lru_cache(maxsize=16)
def list_page(by_topic: bool, by_status: bool, payloads: bool = True) -> tuple[str, str, str]:
    """The total, the page (newest first) and the page's payload sizes of `list`, filtered
    on the columns asked for. Parameters: the topic and/or status, then (page and sizes
    only) limit, offset. Unfiltered there is no WHERE at all: SQLite counts a whole table
    without reading its rows. The sizes are the bytes of each row's stored JSON text, read
    before the payloads so that rows past a page's byte budget are never read."""
    conditions = [name for name, on in (("topic", by_topic), ("status", by_status)) if on]
    where = " WHERE " + " AND ".join(f"{name} = ?" for name in conditions) if conditions else ""
    order = " ORDER BY created DESC, id DESC LIMIT ? OFFSET ?"
    total = f"SELECT count(*) FROM jobs{where}"  # noqa: S608
    columns = _ALL if payloads else _ALL_BUT_BULKY
    page = f"SELECT {columns} FROM jobs{where}{order}"  # noqa: S608
    sizes = f"SELECT {_BULKY_BYTES} FROM jobs{where}{order}"  # noqa: S608
    return total, page, sizes


#: What a claim writes in each of `CLAIM_FIELDS` (a `?` is a parameter, in this order).
_CLAIM_SETS: Final = {
    "status": f"'{_LEASED}'",
    "locked_until": "?",
    "lock_token": "lower(hex(randomblob(16)))",
    "updated": "?",
}
if set(_CLAIM_SETS) != set(CLAIM_FIELDS):  # a field a claim sets needs its SQL here
    raise AssertionError(f"the claim sets {CLAIM_FIELDS}, _CLAIM_SETS covers {set(_CLAIM_SETS)}")
_CLAIM_SET: Final = ", ".join(f"{name} = {_CLAIM_SETS[name]}" for name in CLAIM_FIELDS)
#: `CLAIM_ORDER` as SQL (a leading `-` sorts that field descending, as the claim index does).
_CLAIM_ORDER: Final = ", ".join(
    f"{name.removeprefix('-')} DESC" if name.startswith("-") else name for name in CLAIM_ORDER
)


@lru_cache(maxsize=64)
def claim(topic_count: int) -> str:
    """Lease the first due pending jobs of `topic_count` topics, returning them whole.

    Parameters: the `?` of `_CLAIM_SETS` (locked_until, then now for updated), now
    (due), the topics, limit. SQLite makes the fresh fencing token inside the UPDATE.
    The outer `status = 'pending'` re-checks each row it changes; `status || ''` keeps
    the planner on the primary key for `id IN (...)` rather than scanning every pending
    row through the status index.
    """
    topics = ", ".join(["?"] * topic_count)
    return (
        f"UPDATE jobs SET {_CLAIM_SET}"  # noqa: S608
        " WHERE id IN ("
        f"SELECT id FROM jobs WHERE status = '{_CLAIMABLE}' AND run_at <= ?"
        f" AND topic IN ({topics}) ORDER BY {_CLAIM_ORDER} LIMIT ?"
        f") AND status || '' = '{_CLAIMABLE}'"
        f" RETURNING {_ALL}"
    )


@lru_cache(maxsize=64)
def policies(topic_count: int) -> str:
    """`(topic, paused, max_running)` of those of `topic_count` topics with a policy row."""
    topics = ", ".join(["?"] * topic_count)
    return f"SELECT topic, paused, max_running FROM jobs_topics WHERE topic IN ({topics})"  # noqa: S608


@lru_cache(maxsize=64)
def running(topic_count: int) -> str:
    """`(topic, count)` of processing jobs of `topic_count` topics (expired leases not yet
    rescued included), for the limited ones."""
    topics = ", ".join(["?"] * topic_count)
    return (
        f"SELECT topic, count(*) FROM jobs WHERE status = '{_LEASED}'"  # noqa: S608
        f" AND topic IN ({topics}) GROUP BY topic"
    )


_WALKED: Final = ", ".join(dict.fromkeys(["id", *(name.removeprefix("-") for name in CLAIM_ORDER)]))


@lru_cache(maxsize=64)
def claim_within(topic_count: int) -> str:
    """`claim` for topics each with an allowance: per topic the first of its due
    pending jobs (at most its allowance, one ordered walk of the claim index each), then
    the first of those in `CLAIM_ORDER`, at most the claim's limit.

    Parameters: locked_until and now (as `claim`), then per topic now, the topic and
    its allowance, then the limit.
    """
    branch = (
        f"SELECT * FROM (SELECT {_WALKED} FROM jobs WHERE status = '{_CLAIMABLE}'"  # noqa: S608
        f" AND run_at <= ? AND topic = ? ORDER BY {_CLAIM_ORDER} LIMIT ?)"
    )
    merged = " UNION ALL ".join([branch] * topic_count)
    return (
        f"UPDATE jobs SET {_CLAIM_SET}"  # noqa: S608
        f" WHERE id IN (SELECT id FROM ({merged}) ORDER BY {_CLAIM_ORDER} LIMIT ?)"
        f" AND status || '' = '{_CLAIMABLE}'"
        f" RETURNING {_ALL}"
    )


#: Per topic and status, how many jobs; and every policy row.
TOPIC_COUNTS: Final = "SELECT topic, status, count(*), min(run_at) FROM jobs GROUP BY topic, status"
ALL_POLICIES: Final = "SELECT topic, paused, max_running FROM jobs_topics"
#: Upserts of one setting, then the drop of a row back at the defaults.
SET_PAUSED: Final = (
    "INSERT INTO jobs_topics (topic, paused) VALUES (?, ?)"
    " ON CONFLICT (topic) DO UPDATE SET paused = excluded.paused"
)
SET_MAX_RUNNING: Final = (
    "INSERT INTO jobs_topics (topic, max_running) VALUES (?, ?)"
    " ON CONFLICT (topic) DO UPDATE SET max_running = excluded.max_running"
)
DROP_DEFAULT_POLICY: Final = (
    "DELETE FROM jobs_topics WHERE topic = ? AND paused = 0 AND max_running IS NULL"
)


@lru_cache(maxsize=8)
def delete_finished(statuses: tuple[JobStatus, ...]) -> str:
    """Delete the oldest (`updated`, `id`) jobs of the final `statuses` updated before a
    time, at most a limit of them. Parameters: before (?1), limit (?2).

    SQLite has no DELETE ... LIMIT (unless compiled with it), so the rows are picked by id
    in a sub-select; `BEGIN IMMEDIATE` makes pick and delete one step. Each status is its
    own ordered branch of at most ?2 rows, merged: with an index on (status, updated, id)
    each branch is a covering walk of at most ?2 entries and only the merge of those sorts.
    Until the schema has one, each branch finds its status on `jobs_claim_idx`, reads every
    row of it for `updated` and sorts them: a call costs all the finished rows it looks at.
    Statuses are literals (the core's own enum values). A partial index (`WHERE status IN
    ('completed', 'failed')`) would serve only if each branch also repeated that term word
    for word: SQLite does not prove `status = 'completed'` implies it.
    """
    branches = [
        f"SELECT id, updated FROM jobs WHERE status = '{JobStatus(status).value}'"  # noqa: S608
        " AND updated < ?1 ORDER BY updated, id LIMIT ?2"
        for status in statuses
    ]
    if len(branches) == 1:
        picked = branches[0]
    else:
        merged = " UNION ALL ".join(f"SELECT * FROM ({branch})" for branch in branches)  # noqa: S608
        picked = f"SELECT id, updated FROM ({merged}) ORDER BY updated, id LIMIT ?2"  # noqa: S608
    return f"DELETE FROM jobs WHERE id IN (SELECT id FROM ({picked}))"  # noqa: S608


def _remainder() -> JobStatus | None:
    """The status `COUNTS` takes as the total less the others: the one where a
    long-lived queue's jobs pile up (final, and never requeued), if there is one."""
    piles = [status for status in JobStatus if status in FINAL_STATUSES - REQUEUEABLE_STATUSES]
    return piles[0] if len(piles) == 1 else None


#: The status counted as the total less `COUNTED` (None: every status is counted).
REMAINDER: Final = _remainder()
#: The statuses `COUNTS` counts one by one (each on its range of the claim index).
COUNTED: Final = tuple(status for status in JobStatus if status is not REMAINDER)
#: The number of jobs, then of each `COUNTED` status. SQLite counts a whole table far
#: faster than an index range (it counts b-tree cells without reading them), so the
#: commonest status is the total less the others.
_COUNT_ONE: Final = "(SELECT count(*) FROM jobs WHERE status = '{}')"
_TOTAL: Final = "(SELECT count(*) FROM jobs)"
COUNTS: Final = "SELECT " + ", ".join([_TOTAL, *(_COUNT_ONE.format(s.value) for s in COUNTED)])
