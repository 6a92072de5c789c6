"""The SQL of the hot path (enqueue, claim, guarded update, lease renewal), as asyncpg
runs it.

Each is one statement, so it runs as one autocommitted round trip on a prepared plan:
no BEGIN, no separate NOTIFY, no separate lock query. Arrays carry whole batches
(`unnest`), so one prepared plan serves every batch size.

Status constants are inlined as literals, not bound: only then can the planner match
the partial indexes (`WHERE status = 'pending'`) in the generic plans of prepared
statements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy.dialects.postgresql.base import PGDialect

from jobs_core import CLAIM_ORDER, MUTABLE_FIELDS, RENEW_FIELDS, REQUEST_FIELDS, JobStatus
from jobs_postgres._rows import COLUMNS, RENEW_ARRAYS, UPDATE_ARRAYS, sent_as
from jobs_postgres._schema import HELD_KEY, LEASED, PENDING, Schema, claim_order

_DIALECT: Final = PGDialect()  # type: ignore[no-untyped-call]  # unannotated in SQLAlchemy

#: Longest NOTIFY payload we send; longer topics are announced with an empty payload.
NOTIFY_TOPIC_BYTES: Final = 64


@dataclass(frozen=True, slots=True)
class Statements:
    """The hot-path SQL for one jobs table."""

    #: `COLUMNS` as $1 ... $n (arrays, one element per job, as `_rows.insert_values`
    #: gives them), $n+1 the channel, $n+2 the NOTIFY payloads.
    insert: str
    #: One job: `COLUMNS` as $1 ... $n, $n+1 channel, $n+2 payload.
    #: Cheaper than `insert` with one-element arrays, and enqueueing one job is the
    #: common case.
    insert_one: str
    #: As `insert`'s first n parameters (no NOTIFY): stores each job unless an active
    #: job of its topic holds its unique key (earlier in the batch too: rows go in
    #: array order). Returns the `id` (text) of each row stored.
    insert_unique: str
    #: $1 topics, $2 keys (text arrays, pairwise): the active jobs holding them.
    holders: str
    #: $1 channel, $2 payloads: NOTIFY each.
    notify: str
    #: $1 now, $2 topics, $3 limit, $4 lease end. Returns the leased rows and
    #: `held_topics` (the topics with a policy row: then nothing was claimed).
    claim: str
    #: As `claim`, and $5 each topic's allowance. Returns the leased rows.
    claim_within: str
    #: $1 topics: their policy rows, locked, in topic order.
    lock_topics: str
    #: $1 topics: (topic, n) of their processing rows.
    running: str
    #: `UPDATE_ARRAYS` as $1 ... $m, $m+1 channel. Returns (ord, topic, status) of
    #: every row whose compare-and-set held.
    update: str
    #: `RENEW_ARRAYS` as $1 ... $m. Returns `ord` and the whole row (`COLUMNS`) of every
    #: renewal whose guard held, as stored after it.
    renew: str


def statements(schema: Schema) -> Statements:
    """Build the statements for `schema` (names were checked to be plain identifiers)."""
    t = schema.jobs
    table = f'"{t.schema}"."{t.name}"' if t.schema else f'"{t.name}"'
    # Array casts in the columns' own types, as the table declares them.
    types = {column.name: column.type.compile(dialect=_DIALECT) for column in t.c}
    types |= {
        "ord": "INTEGER",
        "expected_status": types["status"],
        "expected_token": types["lock_token"],
        "overrides": "BOOLEAN",
    }
    columns = ", ".join(COLUMNS)
    returned = ", ".join(f"t.{name}" for name in COLUMNS)
    # Some kinds travel as another type (JSON as text: a JSON null must not become an
    # SQL NULL in an array), cast to the column's in the statement.
    sent = {name: sent_as(name) or types[name] for name in COLUMNS}
    insert_arrays = ", ".join(f"${i}::{sent[name]}[]" for i, name in enumerate(COLUMNS, start=1))

    def cast(value: str, name: str) -> str:
        return value if sent[name] == types[name] else f"{value}::{types[name]}"

    selected = ", ".join(cast(f"v.{name}", name) for name in COLUMNS)
    n = len(COLUMNS)
    insert = (
        f"WITH inserted AS (INSERT INTO {table} ({columns})"  # noqa: S608
        f" SELECT {selected} FROM unnest({insert_arrays}) AS v({columns}) RETURNING 1)"
        f" SELECT pg_notify(${n + 1}, p) FROM unnest(${n + 2}::text[]) AS p"
    )
    values = ", ".join(cast(f"${i}::{sent[name]}", name) for i, name in enumerate(COLUMNS, start=1))
    insert_one = (
        f"WITH inserted AS (INSERT INTO {table} ({columns}) VALUES ({values}) RETURNING 1)"  # noqa: S608
        f" SELECT pg_notify(${n + 1}, ${n + 2})"
    )
    # Rows go in by (topic, key), then batch order (`WITH ORDINALITY`): of two jobs of one
    # key in a batch the first is stored and the second conflicts with it, and two
    # batches taking the same keys wait on them in one order, so they cannot deadlock.
    insert_unique = (
        f"INSERT INTO {table} ({columns})"  # noqa: S608
        f" SELECT {selected} FROM unnest({insert_arrays}) WITH ORDINALITY"
        f" AS v({columns}, ord) ORDER BY v.topic, v.unique_key, v.ord"
        f" ON CONFLICT (topic, unique_key) WHERE {HELD_KEY} DO NOTHING RETURNING id::text"
    )
    holders = (
        f"SELECT {columns} FROM {table}"  # noqa: S608
        " WHERE (topic, unique_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
        f" AND {HELD_KEY}"
    )
    notify = "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p"
    # One ordered walk of the per-topic pending index for each claimed topic, then the
    # first $3 of those (at most topics x $3 rows) in `CLAIM_ORDER`; the plan never sorts
    # the pending jobs themselves, whatever the table's statistics say. Written as
    # `topic = ANY(...) ORDER BY run_at, id`, a table without fresh statistics (new, or
    # just filled) got a bitmap scan sorting every pending job on each claim.
    # - The inner LIMIT is a sub-select, so the planner cannot read its value and plans
    #   for a tenth of the matches: the index walk then beats bitmap-scan-and-sort even
    #   when stale statistics promise only a handful of pending jobs.
    # - Each walk locks (SKIP LOCKED) up to $3 rows of its topic, so a claim over several
    #   busy topics locks up to topics x $3 rows for the statement and updates $3.
    # - `id = ANY(ARRAY(...))` keeps the UPDATE on the primary key; a join with
    #   `picked` could plan a hash join over the whole table for larger batches.
    walked = ", ".join(dict.fromkeys(["id", *(name.removeprefix("-") for name in CLAIM_ORDER)]))
    # - The topics table is read in the same statement: if any claimed topic has a
    #   policy row (paused or limited), this claims nothing (a one-time filter) and
    #   returns those topics in `held_topics`, and the store claims again with
    #   `claim_within` in a transaction that locks those rows. With no policy rows (the
    #   common case) it is the claim it always was, plus one primary-key probe.
    # - The answer is at least one row (`held` LEFT JOIN the claimed rows): a row whose
    #   `id` is NULL claimed nothing.
    topics = schema.sql(schema.topics.name)
    set_claimed = (
        f" UPDATE {table} AS t SET status = '{LEASED}', locked_until = $4,"  # noqa: S608
        " lock_token = replace(gen_random_uuid()::text, '-', ''), updated = $1"
        f" WHERE t.id = ANY(ARRAY(SELECT id FROM picked)) RETURNING {returned}"
    )
    claim = (
        f"WITH held AS (SELECT array_agg(topic) AS held_topics FROM {topics}"  # noqa: S608
        " WHERE topic = ANY($2::text[])),"
        " picked AS (SELECT c.id FROM unnest($2::text[]) AS w(topic)"
        f" CROSS JOIN LATERAL (SELECT {walked} FROM {table}"
        f" WHERE status = '{PENDING}' AND topic = w.topic AND run_at <= $1"
        f" ORDER BY {claim_order()} LIMIT (SELECT $3::bigint) FOR UPDATE SKIP LOCKED) AS c"
        " WHERE (SELECT held_topics FROM held) IS NULL"
        f" ORDER BY {claim_order('c.')} LIMIT $3),"
        f" claimed AS ({set_claimed.strip()})"
        " SELECT claimed.*, held.held_topics FROM held LEFT JOIN claimed ON true"
    )
    # The claim within per-topic allowances ($5, one per topic of $2), run by the store
    # after locking the limited topics' policy rows and counting their running jobs in
    # the same transaction: each topic's walk stops at its allowance.
    claim_within = (
        "WITH picked AS (SELECT c.id FROM unnest($2::text[], $5::bigint[]) AS w(topic, n)"  # noqa: S608
        f" CROSS JOIN LATERAL (SELECT {walked} FROM {table}"
        f" WHERE status = '{PENDING}' AND topic = w.topic AND run_at <= $1"
        f" ORDER BY {claim_order()} LIMIT w.n FOR UPDATE SKIP LOCKED) AS c"
        f" ORDER BY {claim_order('c.')} LIMIT $3)"
        f"{set_claimed}"
    )
    # Inside the limited claim's transaction, before `claim_within`: lock the claimed
    # topics' policy rows (in topic order: two claims never deadlock), then count the
    # limited ones' `processing` rows (a fresh snapshot: after the lock, so every claim
    # that held it before has committed and is counted).
    lock_topics = (
        f"SELECT topic, paused, max_running FROM {topics}"  # noqa: S608
        " WHERE topic = ANY($1::text[]) ORDER BY topic FOR UPDATE"
    )
    running = (
        f"SELECT topic, count(*) AS n FROM {table} WHERE status = '{LEASED}'"  # noqa: S608
        " AND topic = ANY($1::text[]) GROUP BY topic"
    )
    sent |= {name: types[name] for name in UPDATE_ARRAYS if name not in sent}
    arrays = ", ".join(f"${i}::{sent[name]}[]" for i, name in enumerate(UPDATE_ARRAYS, start=1))
    names = ", ".join(UPDATE_ARRAYS)
    sets = ", ".join(f"{name} = {cast(f'v.{name}', name)}" for name in MUTABLE_FIELDS)
    channel = f"${len(UPDATE_ARRAYS) + 1}"
    # Rows are locked by ascending id before any is changed (`locked` emits them in id
    # order and the UPDATE only touches rows it has emitted), so two writers whose
    # batches overlap never deadlock. Jobs put back to pending wake listeners; identical
    # notifications in one transaction are delivered once.
    update = (
        f"WITH v AS (SELECT * FROM unnest({arrays}) AS v({names})),"  # noqa: S608
        f" locked AS (SELECT t.id FROM {table} AS t WHERE t.id IN (SELECT id FROM v)"
        " ORDER BY t.id FOR UPDATE),"
        f" changed AS (UPDATE {table} AS t SET {sets}"
        " FROM locked JOIN v ON v.id = locked.id"
        " WHERE t.id = locked.id AND t.status = v.expected_status"
        " AND t.lock_token IS NOT DISTINCT FROM v.expected_token"
        # A write that would drop a request made since its writer read the job is
        # refused (`jobs_core.REQUEST_FIELDS`; `v.overrides` says it may).
        f" AND (({' AND '.join(f't.{name} IS NULL' for name in REQUEST_FIELDS)}) OR v.overrides)"
        " RETURNING v.ord, t.topic, t.status)"
        " SELECT ord, topic, status,"
        f" CASE WHEN status = '{PENDING}' THEN pg_notify({channel},"
        f" CASE WHEN octet_length(topic) <= {NOTIFY_TOPIC_BYTES} THEN topic ELSE '' END)"
        " END AS notified FROM changed"
    )
    sent |= {name: types[name] for name in RENEW_ARRAYS if name not in sent}
    renewals = ", ".join(f"${i}::{sent[name]}[]" for i, name in enumerate(RENEW_ARRAYS, start=1))
    lease = ", ".join(f"{name} = {cast(f'v.{name}', name)}" for name in RENEW_FIELDS)
    # The update's shape (rows locked in id order first, so overlapping batches never
    # deadlock), writing only the lease. The guard also accepts the renewal's own new
    # token (`v.lock_token`): a renewal repeated after its answer was lost finds its own
    # write, rewrites the same values and returns the row again.
    renew = (
        f"WITH v AS (SELECT * FROM unnest({renewals}) AS v({', '.join(RENEW_ARRAYS)})),"  # noqa: S608
        f" locked AS (SELECT t.id FROM {table} AS t WHERE t.id IN (SELECT id FROM v)"
        " ORDER BY t.id FOR UPDATE)"
        f" UPDATE {table} AS t SET {lease}"
        " FROM locked JOIN v ON v.id = locked.id"
        " WHERE t.id = locked.id AND t.status = v.expected_status"
        " AND t.lock_token IN (v.expected_token, v.lock_token)"
        f" RETURNING v.ord, {returned}"
    )
    return Statements(
        insert=insert,
        insert_one=insert_one,
        insert_unique=insert_unique,
        holders=holders,
        notify=notify,
        claim=claim,
        claim_within=claim_within,
        lock_topics=lock_topics,
        running=running,
        update=update,
        renew=renew,
    )


def delete_finished(schema: Schema, statuses: tuple[JobStatus, ...]) -> str:
    """Delete up to $2 of the oldest (`updated`, `id`) jobs of the final `statuses` updated
    before $1, in one statement; the command tag says how many went.

    Each status is its own CTE: an ordered pick of at most $2 rows, locked `FOR UPDATE SKIP
    LOCKED`, so a round never waits for a row someone is changing (a requeue, a single
    delete, another round) and two rounds at once delete different rows; the first $2 of
    the picks by (`updated`, `id`) go. The DELETE re-checks status and time, and touches
    only rows its own picks locked, so it never waits on a row lock either. Statuses are
    literals so that a partial index `(status, updated, id) WHERE status IN ('completed',
    'failed')` matches them; until the schema has one (or a plain index on those columns)
    each pick is a scan of the table and a top-$2 sort. The LIMIT is a sub-select for the
    reason the claim's is (see `statements`).
    """
    t = schema.jobs
    table = f'"{t.schema}"."{t.name}"' if t.schema else f'"{t.name}"'
    literals = [f"'{JobStatus(status).value}'" for status in statuses]
    picks = [
        f"p{i} AS (SELECT id, updated FROM {table} WHERE status = {literal}"  # noqa: S608
        " AND updated < $1 ORDER BY updated, id LIMIT (SELECT $2::bigint)"
        " FOR UPDATE SKIP LOCKED)"
        for i, literal in enumerate(literals)
    ]
    merged = " UNION ALL ".join(f"SELECT id, updated FROM p{i}" for i in range(len(picks)))  # noqa: S608
    return (
        f"WITH {', '.join(picks)},"  # noqa: S608
        f" picked AS (SELECT id FROM ({merged}) AS u ORDER BY updated, id LIMIT $2)"
        f" DELETE FROM {table} WHERE id = ANY(ARRAY(SELECT id FROM picked))"
        f" AND status IN ({', '.join(literals)}) AND updated < $1"
    )
