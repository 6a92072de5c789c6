"""Row conversion: `Job` <-> the SQLite columns (JSON in TEXT, times as sortable UTC text).

Times are stored as fixed-width `YYYY-MM-DDTHH:MM:SS.ffffffZ`, so comparing and ordering
the text is comparing and ordering the instants, and microseconds round-trip exactly.
A row that cannot be read back (bad JSON, bad time, unknown status) raises `UnreadableJob`
naming the job, the column and the value: it is corrupt data, not a caller's mistake.

The codecs (`insert_values`, `guarded_values`, `renew_values`, `from_row`) are built from
`jobs_core.JOB_SCHEMA` and `KINDS` (one codec per field kind): their source is generated
once at import and compiled, so each is the straight-line function one would write by
hand, with no per-field loop or lookup on the hot path. `SOURCES` shows the code.
"""

from __future__ import annotations

import json
import linecache
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple, Protocol

from sqlalchemy import Integer, Text
from sqlalchemy.types import TypeEngine

from jobs_core import (
    COMPLETE_FIELDS,
    EARLIEST_TIME,
    JOB_FIELDS,
    JOB_SCHEMA,
    LATEST_TIME,
    MUTABLE_FIELDS,
    RENEW_FIELDS,
    AttemptError,
    FieldKind,
    InvalidPayload,
    Job,
    JobStatus,
    JobUpdate,
    UnreadableJob,
    errors_from_json,
    errors_to_json,
    overrides_requests,  # noqa: F401 - called by the generated `guarded_values`
)

#: Column order of every `SELECT` of whole jobs (one column per `Job` field, same name;
#: the order of `_schema.jobs_table`).
COLUMNS: Final = JOB_FIELDS
_TIME_WIDTH: Final = len("2030-01-01T00:00:00.000000Z")
_LOCAL_WIDTH: Final = _TIME_WIDTH - 1
_JSON: Final = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_loads: Final = json.JSONDecoder().decode
_STATUSES: Final = {status.value: status for status in JobStatus}


def format_time(value: datetime) -> str:
    """Fixed-width ISO 8601 UTC text with microseconds; naive datetimes are refused."""
    if value.tzinfo is not UTC:
        offset = value.utcoffset()
        if offset is None:
            raise ValueError(f"datetime must be timezone-aware, got naive {value!r}")
        if offset:
            value = value.astimezone(UTC)
    # An aware isoformat ends in its offset ("+00:00"), after exactly 26 characters.
    return value.isoformat(timespec="microseconds")[:_LOCAL_WIDTH] + "Z"


def format_optional(value: datetime | None) -> str | None:
    """`format_time`, passing `None` through."""
    return None if value is None else format_time(value)


def parse_time(text: str) -> datetime:
    """Read back what `format_time` wrote (exactly that form; anything else is corrupt)."""
    if not isinstance(text, str) or len(text) != _TIME_WIDTH or text[-1] != "Z":
        raise ValueError("not a fixed-width UTC time like 2030-01-01T00:00:00.000000Z")
    return datetime.fromisoformat(text)  # "Z" gives tzinfo=UTC


def dump_payload(payload: Any) -> str:
    """Compact JSON text of a payload (the service validated it already)."""
    try:
        return _JSON.encode(payload)
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"payload is not storable as JSON: {exc}") from exc


class TimeTexts:
    """Times and their stored text, both ways, remembered across a store's calls.

    Formatting and parsing a time cost more than the rest of a row: a claimed job's
    times come back in its result write, the rows of one claim share their lease and
    update times, and a new job's times are one instant. Bounded: forgets everything
    past `limit` entries. Not thread-safe; one store's calls run one at a time.
    """

    __slots__ = ("_limit", "_text_of", "_time_of")

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._text_of: dict[datetime, str] = {}
        self._time_of: dict[str, datetime] = {}

    def __len__(self) -> int:
        return len(self._time_of)

    def text(self, value: datetime) -> str:
        """`format_time(value)`."""
        found = self._text_of.get(value)
        if found is None:
            found = format_time(value)
            self._remember(value, found)
        return found

    def time(self, text: str) -> datetime:
        """`parse_time(text)`."""
        found = self._time_of.get(text)
        if found is None:
            found = parse_time(text)
            self._remember(found, text)
        return found

    def _remember(self, value: datetime, text: str) -> None:
        if len(self._time_of) >= self._limit:
            self._text_of.clear()
            self._time_of.clear()
        self._text_of[value] = text
        self._time_of[text] = value


# -- the codecs, compiled from the job schema ----------------------------------------


def _job_time(text: str) -> datetime:
    """`parse_time`, also refusing instants outside the range a `Job` may hold."""
    value = parse_time(text)
    if not EARLIEST_TIME <= value <= LATEST_TIME:
        raise ValueError(f"outside {EARLIEST_TIME.isoformat()}..{LATEST_TIME.isoformat()}")
    return value


def dump_errors(errors: Sequence[AttemptError]) -> str:
    """The attempt history's JSON text (`"[]"` for none, without encoding anything)."""
    return _JSON.encode(errors_to_json(errors)) if errors else "[]"


def load_errors(text: str) -> tuple[AttemptError, ...]:
    """Read back what `dump_errors` wrote (a job with no failed attempt costs nothing)."""
    return () if text == "[]" else errors_from_json(_loads(text))


def unread_literal(name: str) -> str:
    """SQL for the stored form of bulky field `name`'s unread value (`FieldSpec.unread`),
    which a listing without payloads selects in place of the column."""
    spec = _SPEC_OF[name]
    value = spec.unread
    if value is None and spec.nullable:
        return "NULL"
    text = {FieldKind.JSON: dump_payload, FieldKind.ERRORS: dump_errors}[spec.kind](value)
    return "'" + text.replace("'", "''") + "'"


def _integer(value: object) -> int:
    if type(value) is not int:
        raise TypeError(f"not an integer: {type(value).__name__}")
    return value


class Kind(NamedTuple):
    """How this store keeps one `FieldKind`: its column type, and Python expressions
    (`{}` is the value) that encode a field's value for its column and decode it back.

    `guard` is a condition that is true of a stored value `decode` would accept but
    `Job` must not hold (the fast path checks it once per row); `check` reads a stored
    value strictly, raising if it is corrupt, to name the bad column of a failed row.
    """

    column: type[TypeEngine[Any]]
    encode: str = "{}"
    decode: str = "{}"
    guard: str | None = None
    check: Callable[[Any], object] | None = None


#: Every `FieldKind` as a SQLite column and its codec.
KINDS: Final[Mapping[FieldKind, Kind]] = {
    FieldKind.ID: Kind(Text),
    FieldKind.TEXT: Kind(Text),
    FieldKind.JSON: Kind(Text, "dump_payload({})", "_loads({})", check=_loads),
    FieldKind.TIME: Kind(Text, "text({})", "read_time({})", check=_job_time),
    FieldKind.INT: Kind(Integer, guard="type({}) is not int", check=_integer),
    FieldKind.STATUS: Kind(Text, "{}.value", "_STATUSES[{}]", check=_STATUSES.__getitem__),
    FieldKind.ERRORS: Kind(Text, "dump_errors({})", "load_errors({})", check=load_errors),
}
_KIND_OF: Final = {spec.name: KINDS[spec.kind] for spec in JOB_SCHEMA}
_SPEC_OF: Final = {spec.name: spec for spec in JOB_SCHEMA}
_ID: Final = next(spec.name for spec in JOB_SCHEMA if spec.kind is FieldKind.ID)
_STATUS: Final = next(spec.name for spec in JOB_SCHEMA if spec.kind is FieldKind.STATUS)


def _encoded(name: str, source: str) -> tuple[list[str], str]:
    """Lines binding the value of field `name` (read by the expression `source`) to a
    local when the encoding needs it twice, and the expression of its stored value."""
    spec, kind = _SPEC_OF[name], _KIND_OF[name]
    if kind.encode == "{}":
        return [], source
    if not spec.nullable:
        return [], kind.encode.format(source)
    local = f"v_{name}"
    return [f"    {local} = {source}"], f"None if {local} is None else {kind.encode.format(local)}"


def _values_function(name: str, signature: str, fields: Sequence[str], tail: Sequence[str]) -> str:
    """The source of a function returning the stored values of `fields` of `job`, then
    the expressions `tail`, as one tuple."""
    lines = [f"def {name}({signature}):"]
    if signature.startswith("change"):
        lines.append("    job = change.job")
    values = []
    for field in fields:
        bind, value = _encoded(field, f"job.{field}")
        lines += bind
        values.append(value)
    lines.append(f"    return ({', '.join([*values, *tail])},)")
    return "\n".join(lines) + "\n"


def _from_row_source() -> str:
    names = [f"c_{name}" for name in COLUMNS]
    guards = [
        kind.guard.format(f"c_{name}")
        if not _SPEC_OF[name].nullable
        else f"(c_{name} is not None and {kind.guard.format(f'c_{name}')})"
        for name, kind in _KIND_OF.items()
        if kind.guard is not None
    ]
    fields = []
    for name in COLUMNS:
        kind, local = _KIND_OF[name], f"c_{name}"
        value = kind.decode.format(local)
        if _SPEC_OF[name].nullable and kind.decode != "{}":
            value = f"None if {local} is None else {value}"
        fields.append(f"{name}={value}")
    lines = [
        "def from_row(row, path, read_time=parse_time):",
        "    try:",
        f"        ({', '.join(names)},) = row",
    ]
    if guards:
        lines += [
            f"        if {' or '.join(guards)}:",
            "            raise TypeError('a column holds a value of the wrong type')",
        ]
    lines += [
        f"        return Job({', '.join(fields)})",
        "    except (ValueError, TypeError, KeyError) as exc:",
        "        raise _corrupt(row, path, exc) from exc",
    ]
    return "\n".join(lines) + "\n"


def _compile(name: str, source: str, doc: str) -> Any:
    """Define the function `name` from `source` (registered with `linecache`, so
    tracebacks show its lines) in this module's namespace."""
    filename = f"<jobs_sqlite._rows.{name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {}
    exec(compile(source, filename, "exec"), globals(), namespace)  # noqa: S102 (our own text)
    function = namespace[name]
    function.__doc__ = doc
    function.__module__ = __name__
    return function


class _InsertValues(Protocol):
    def __call__(self, job: Job, text: Callable[[datetime], str] = ..., /) -> tuple[Any, ...]: ...


class _GuardedValues(Protocol):
    def __call__(
        self, change: JobUpdate, text: Callable[[datetime], str] = ..., /
    ) -> tuple[Any, ...]: ...


class _FromRow(Protocol):
    def __call__(
        self, row: Sequence[Any], path: str, read_time: Callable[[str], datetime] = ..., /
    ) -> Job: ...


#: The generated source of each codec, for reading (and the tests).
SOURCES: Final = {
    "insert_values": _values_function("insert_values", "job, text=format_time", COLUMNS, ()),
    "guarded_values": _values_function(
        "guarded_values",
        "change, text=format_time",
        MUTABLE_FIELDS,
        (
            "job.id",
            "_status_text(change.expected_status)",
            "change.expected_lock_token",
            "overrides_requests(change)",
        ),
    ),
    "completion_values": _values_function(
        "completion_values",
        "change, text=format_time",
        COMPLETE_FIELDS,
        ("job.id", "change.expected_lock_token"),
    ),
    "renew_values": _values_function(
        "renew_values",
        "change, text=format_time",
        RENEW_FIELDS,
        (
            "job.id",
            "_status_text(change.expected_status)",
            "change.expected_lock_token",
            "job.lock_token",
        ),
    ),
    "from_row": _from_row_source(),
}

#: All columns of a new job, in `COLUMNS` order (for positional `?` parameters).
insert_values: Final[_InsertValues] = _compile(
    "insert_values",
    SOURCES["insert_values"],
    "All columns of a new job, in `COLUMNS` order (for positional `?` parameters).",
)
guarded_values: Final[_GuardedValues] = _compile(
    "guarded_values",
    SOURCES["guarded_values"],
    "The new values of `MUTABLE_FIELDS`, in that order, then the guard: id, expected"
    " status, expected lock token, whether it may drop a request"
    " (the parameters of `_statements.GUARDED_UPDATE`).",
)
completion_values: Final[_GuardedValues] = _compile(
    "completion_values",
    SOURCES["completion_values"],
    "The new values of `COMPLETE_FIELDS`, in that order, then the job's id and the lock"
    " token of its lease (one row of `_statements.complete_all`).",
)
renew_values: Final[_GuardedValues] = _compile(
    "renew_values",
    SOURCES["renew_values"],
    "The new values of `RENEW_FIELDS`, in that order, then the guard: id, expected"
    " status, expected lock token, the renewal's own new token (the parameters of"
    " `_statements.RENEW`).",
)
from_row: Final[_FromRow] = _compile(
    "from_row",
    SOURCES["from_row"],
    "The `Job` stored in `row` (columns in `COLUMNS` order), or `UnreadableJob` if corrupt."
    "\n\nThe fast path checks nothing twice; only a row that fails is looked at again,"
    " column by column, to say which value is wrong.",
)


def to_row(job: Job) -> dict[str, Any]:
    """All columns of a new job, by name (for SQLAlchemy's `insert`)."""
    return dict(zip(COLUMNS, insert_values(job), strict=True))


def _status_text(status: JobStatus | str) -> str:
    """`JobStatus(status).value` without the enum lookup when it is a member already."""
    return status.value if type(status) is JobStatus else JobStatus(status).value


def from_rows(
    rows: Sequence[Sequence[Any]], path: str, texts: TimeTexts | None = None
) -> list[Job]:
    """`from_row` of each row, each distinct time text read once (see `TimeTexts`)."""
    read_time = (texts if texts is not None else TimeTexts()).time
    return [from_row(row, path, read_time) for row in rows]


def decode_each(
    rows: Sequence[Sequence[Any]], path: str, texts: TimeTexts | None = None
) -> tuple[list[Job], list[tuple[Sequence[Any], UnreadableJob]]]:
    """Each row decoded on its own: the readable jobs, and each unreadable row with its error
    (so one corrupt row does not hide the others from a claim or a rescue sweep)."""
    read_time = (texts if texts is not None else TimeTexts()).time
    jobs: list[Job] = []
    bad: list[tuple[Sequence[Any], UnreadableJob]] = []
    for row in rows:
        try:
            jobs.append(from_row(row, path, read_time))
        except UnreadableJob as exc:
            bad.append((row, exc))
    return jobs, bad


def _nullable(check: Callable[[Any], object]) -> Callable[[Any], object]:
    return lambda value: None if value is None else check(value)


#: (column, strict reader) of each column whose value can be corrupt, in column order.
_READERS: Final = tuple(
    (name, _nullable(kind.check) if _SPEC_OF[name].nullable else kind.check)
    for name, kind in _KIND_OF.items()
    if kind.check is not None
)


def _corrupt(row: Sequence[Any], path: str, exc: Exception) -> UnreadableJob:
    """Name the first column of `row` that cannot be read (or, failing that, `exc`)."""
    values = dict(zip(COLUMNS, row, strict=False))
    column: str = "row"
    shown: object = tuple(row)
    problem: Exception = exc
    for name, read in _READERS:
        try:
            read(values.get(name))
        except (ValueError, TypeError, KeyError) as found:
            column, shown, problem = name, values.get(name), found
            break
    status = values.get(_STATUS)
    return UnreadableJob(
        str(values.get(_ID)),
        f"corrupt row: column {column} holds {_clip(shown)}, which cannot be read"
        f" ({type(problem).__name__}: {problem})",
        status if status in _STATUSES else None,
        store=f"SQLite store {path}",
    )


def _clip(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
