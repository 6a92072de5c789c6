"""Rows to `Job` values and back, built from the core's `JOB_SCHEMA`.

One table, `KINDS`, says for each field kind how PostgreSQL keeps it: the column type,
the value the hot path sends (asyncpg), the value SQLAlchemy's insert takes, and how a
row value reads back. The codecs below are generated from it once, at import, as plain
Python functions (one attribute read and one expression per field, as hand-written
codecs would be), so a new `Job` field needs no edit here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from jobs_core import (
    JOB_SCHEMA,
    MUTABLE_FIELDS,
    RENEW_FIELDS,
    AttemptError,
    FieldKind,
    FieldSpec,
    Job,
    JobStatus,
    JobUpdate,
    UnreadableJob,
    errors_from_json,
    errors_to_json,
    overrides_requests,
)


def dumps(value: object) -> str:
    """JSON text of a payload, as the core's canonical form writes it (strict, UTF-8)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def dump_errors(errors: Sequence[AttemptError]) -> str:
    """The attempt history as JSON text (`"[]"` for none, without encoding anything)."""
    return dumps(errors_to_json(errors)) if errors else "[]"


def load_errors(value: object) -> tuple[AttemptError, ...]:
    """The attempt history from its decoded JSON (a job with no failed attempt costs
    nothing)."""
    return () if value == [] else errors_from_json(value)


@dataclass(frozen=True, slots=True)
class Kind:
    """How PostgreSQL keeps one field kind. Templates take the value's expression as `{v}`
    (and the field's name as `{name}`)."""

    #: The column's SQLAlchemy type.
    column: Callable[[], sa.types.TypeEngine[Any]]
    #: The value the hot path sends to asyncpg.
    sent: str = "{v}"
    #: The SQL type it is sent as, when not the column's own (then cast in the SQL).
    sent_as: str | None = None
    #: The value SQLAlchemy's insert takes (it applies the column type's own encoding).
    stored: str = "{v}"
    #: The field's value from a non-NULL row value.
    read: str = "{v}"


KINDS: Final[Mapping[FieldKind, Kind]] = {
    FieldKind.ID: Kind(lambda: pg.UUID(as_uuid=False), read="str({v})"),
    FieldKind.TEXT: Kind(sa.Text),
    # Sent as JSON text: in an array, a JSON null must not become an SQL NULL.
    FieldKind.JSON: Kind(lambda: pg.JSONB(none_as_null=False), sent="dumps({v})", sent_as="TEXT"),
    FieldKind.TIME: Kind(lambda: sa.DateTime(timezone=True), read="_time({v}, {name!r})"),
    FieldKind.INT: Kind(sa.Integer),
    FieldKind.STATUS: Kind(sa.Text, sent="{v}.value", stored="{v}.value", read="_status({v})"),
    FieldKind.ERRORS: Kind(
        lambda: pg.JSONB(none_as_null=False),
        sent="dump_errors({v})",
        sent_as="TEXT",
        stored="errors_to_json({v})",
        read="load_errors({v})",
    ),
}

#: Every column (one per `Job` field, same name), in the order rows are returned.
COLUMNS: Final = tuple(spec.name for spec in JOB_SCHEMA)
#: The arrays a guarded update takes, in parameter order: the input position, the
#: guard, then the new values of `MUTABLE_FIELDS`.
_GUARD_ARRAYS: Final = ("ord", "id", "expected_status", "expected_token")
#: Whether the update may drop a request the row holds (`jobs_core.overrides_requests`).
_OVERRIDES: Final = "overrides"
UPDATE_ARRAYS: Final = (*_GUARD_ARRAYS, _OVERRIDES, *MUTABLE_FIELDS)
#: The arrays a lease renewal takes, in parameter order: the input position, the guard
#: (the renewal's own new token, the guard's other accepted value, is its `lock_token`),
#: then the new values of `RENEW_FIELDS`.
RENEW_ARRAYS: Final = (*_GUARD_ARRAYS, *RENEW_FIELDS)
#: Stands in for an id that is no UUID in an update: it matches no row.
_NO_ID: Final = "00000000-0000-0000-0000-000000000000"

#: The canonical form of a UUID, as the core issues ids: lower-case 8-4-4-4-12 hex.
_CANONICAL_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_id(job_id: object) -> str | None:
    """`job_id` if it is a canonical lower-case UUID string, else None.

    Only the exact form the core issues matches, so `get("A1B2...")` behaves as it
    does on every other store (not found) instead of PostgreSQL's lenient parsing.
    """
    if isinstance(job_id, str) and _CANONICAL_UUID.fullmatch(job_id):
        return job_id
    return None


def _time(value: datetime | None, column: str) -> datetime:
    """`value` in UTC. asyncpg decodes `timestamptz` as aware UTC, except `-infinity`
    and `infinity`, which come back as naive `datetime.min`/`max`: no instant at all."""
    if value is None:
        raise ValueError(f"{column} is NULL")
    if value.utcoffset() is None:
        stored = "-infinity" if value == datetime.min else "infinity"
        raise ValueError(f"{column} holds {stored}, which is no valid time")
    return value.astimezone(UTC)


_status = JobStatus


def _spec_column(spec: FieldSpec) -> sa.Column[Any]:
    return sa.Column(
        spec.name,
        KINDS[spec.kind].column(),
        primary_key=spec.kind is FieldKind.ID,
        nullable=spec.nullable,
    )


def job_columns() -> list[sa.Column[Any]]:
    """A fresh `sa.Column` per `Job` field, in `JOB_SCHEMA` order (for one `sa.Table`)."""
    return [_spec_column(spec) for spec in JOB_SCHEMA]


def unread_column(name: str) -> sa.ColumnElement[Any]:
    """A constant holding bulky field `name`'s unread value (`FieldSpec.unread`) as the
    column stores it, which a listing without payloads selects in place of the column."""
    spec = _SPECS[name]
    value = spec.unread
    if value is None:
        return sa.null()  # read back as None (the payload's, the result's unread value)
    stored = errors_to_json(value) if spec.kind is FieldKind.ERRORS else value
    return sa.cast(sa.literal(dumps(stored)), KINDS[spec.kind].column())


def sent_as(name: str) -> str | None:
    """The SQL type the hot path sends field `name` as, when not its column's type."""
    return KINDS[_SPECS[name].kind].sent_as


_SPECS: Final = {spec.name: spec for spec in JOB_SCHEMA}


def _expr(template: str, value: str, spec: FieldSpec) -> str:
    """`template` applied to the expression `value`; NULL passes through unconverted."""
    converted = template.format(v=value, name=spec.name)
    if converted == value or not spec.nullable:
        return converted
    return f"(None if (_n := {value}) is None else {template.format(v='_n', name=spec.name)})"


def _arrays_source(name: str, fields: Sequence[str], extra: Sequence[str] = ()) -> str:
    """The source of `name(indexed)`: parallel arrays of the position, the guard, the
    expressions `extra` and the new values of `fields` of each `(position, change)`, in
    id order."""
    head = len(_GUARD_ARRAYS) + len(extra)
    arrays = [f"a{i}" for i in range(head + len(fields))]
    lines = [
        f"def {name}(indexed):",
        "    ordered = sorted(indexed, key=_by_id)",
        f"    {', '.join(arrays)} = {', '.join('[]' for _ in arrays)}",
        "    for position, change in ordered:",
        "        job = change.job",
        "        a0.append(position)",
        "        a1.append(canonical_id(job.id) or _NO_ID)",
        "        a2.append(_status(change.expected_status).value)",
        "        a3.append(change.expected_lock_token)",
        *(
            f"        a{i}.append({value})"
            for i, value in enumerate(extra, start=len(_GUARD_ARRAYS))
        ),
        *(
            f"        a{i}.append({_expr(KINDS[_SPECS[n].kind].sent, f'job.{n}', _SPECS[n])})"
            for i, n in enumerate(fields, start=head)
        ),
        f"    return [{', '.join(arrays)}]",
    ]
    return "\n".join(lines) + "\n"


_SOURCE: Final = "\n".join(
    [
        "def to_row(job):",
        "    return {"
        + ", ".join(
            f"{s.name!r}: {_expr(KINDS[s.kind].stored, f'job.{s.name}', s)}" for s in JOB_SCHEMA
        )
        + "}",
        "",
        "def insert_values(job):",
        "    return ("
        + ", ".join(_expr(KINDS[s.kind].sent, f"job.{s.name}", s) for s in JOB_SCHEMA)
        + ",)",
        "",
        "def to_job(row):",
        "    try:",
        "        return Job("
        + ", ".join(
            f"{s.name}={_expr(KINDS[s.kind].read, f'row[{s.name!r}]', s)}" for s in JOB_SCHEMA
        )
        + ")",
        "    except (ValueError, TypeError, OverflowError) as exc:",
        "        raise unreadable(row, exc) from exc",
        "",
        "",
        _arrays_source("update_arrays", MUTABLE_FIELDS, ["overrides_requests(change)"]),
        _arrays_source("renew_arrays", RENEW_FIELDS),
    ]
)


def _by_id(item: tuple[int, JobUpdate]) -> str:
    return item[1].job.id


def unreadable(row: Mapping[Any, Any], exc: Exception) -> UnreadableJob:
    """The `UnreadableJob` for `row`, carrying its status text when that is readable."""
    status = row["status"]
    known = status if status in _STATUS_VALUES else None
    return UnreadableJob(str(row["id"]), f"{type(exc).__name__}: {exc}", known)


_STATUS_VALUES: Final = frozenset(s.value for s in JobStatus)

_compiled: dict[str, Any] = {
    "Job": Job,
    "dumps": dumps,
    "dump_errors": dump_errors,
    "load_errors": load_errors,
    "errors_to_json": errors_to_json,
    "overrides_requests": overrides_requests,
    "_time": _time,
    "_status": _status,
    "_by_id": _by_id,
    "_NO_ID": _NO_ID,
    "canonical_id": canonical_id,
    "unreadable": unreadable,
}
exec(compile(_SOURCE, "<jobs_postgres._rows codecs>", "exec"), _compiled)  # noqa: S102

#: Column values of a new job, for SQLAlchemy's insert (`insert_with`).
to_row = cast(Callable[[Job], dict[str, Any]], _compiled["to_row"])
#: A new job's values in `COLUMNS` order, as the hot insert sends them (JSON as text).
insert_values = cast(Callable[[Job], tuple[Any, ...]], _compiled["insert_values"])
#: The `Job` a row holds (times in UTC, id as its canonical string). A row that is no
#: valid `Job` (a time of `±infinity` or outside the range the core allows, an unknown
#: status...) raises `UnreadableJob` naming the job and the problem.
to_job = cast(Callable[[Mapping[Any, Any]], Job], _compiled["to_job"])
#: The parallel arrays of `UPDATE_ARRAYS` for one round of `(position, update)`, in id
#: order (rows are then locked in that order).
update_arrays = cast(
    Callable[[Sequence[tuple[int, JobUpdate]]], list[list[Any]]], _compiled["update_arrays"]
)
#: The parallel arrays of `RENEW_ARRAYS` for `(position, renewal)` pairs, in id order.
renew_arrays = cast(
    Callable[[Sequence[tuple[int, JobUpdate]]], list[list[Any]]], _compiled["renew_arrays"]
)


Unreadable = tuple[Mapping[Any, Any], UnreadableJob]


def decode_each(rows: Sequence[Mapping[Any, Any]]) -> tuple[list[Job], list[Unreadable]]:
    """Each row decoded on its own: the readable jobs, and each unreadable row with its
    error (one corrupt row must not hide the others from a claim or a rescue sweep)."""
    jobs: list[Job] = []
    bad: list[Unreadable] = []
    for row in rows:
        try:
            jobs.append(to_job(row))
        except UnreadableJob as exc:
            bad.append((row, exc))
    return jobs, bad
