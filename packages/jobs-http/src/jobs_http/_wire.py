"""The JSON shapes of the API (attrs classes) and the strict reading of the enqueue body.

Responses are built from core values here and nowhere else. The job's shape is derived
from `jobs_core.JOB_SCHEMA`: one attrs field per wire field, typed and converted by its
kind (`_KINDS`) and described by its doc, plus `actions`. The enqueue body's fields are
`Jobs.enqueue`'s arguments (`topic`, `payload`) and the option fields (`OPTION_FIELDS`),
each read by its kind. The body is parsed by hand rather than by Litestar, because the
default decoder is lenient where we must not be:

- NaN / Infinity / -Infinity are refused (they are not JSON);
- a key repeated in one object is refused instead of "last one wins";
- integers too long to convert and nesting too deep for the parser are a 400, not a 500;
- the body must be a JSON object with only the documented fields; anything else --
  `status`, `id`, `retries`... -- is named and refused, so a client can never set
  server-owned fields;
- an integer must be a real integer (`true` is not 1) and a time an RFC 3339 string
  with an explicit offset.
"""

from __future__ import annotations

import json
import operator
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, NoReturn

import attrs
from litestar.params import KwargDefinition
from litestar.serialization import encode_json

from jobs_core import (
    CLIENT_EVENTS,
    JOB_SCHEMA,
    MAX_TRACEBACK_LENGTH,
    OPTION_FIELDS,
    AttemptError,
    EnqueueOptions,
    FieldKind,
    FieldSpec,
    InvalidInput,
    Job,
    JobPage,
    JobStats,
    JobStatus,
    TopicInfo,
    allowed_actions,
)


class InvalidBody(InvalidInput):
    """The request body is not the JSON the endpoint documents; `data` says which field."""

    def __init__(self, message: str, data: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.data: dict[str, str] = dict(data or {})


# -- field kinds ----------------------------------------------------------------------


#: A time in UTC (RFC 3339 with `Z` on the wire); a C call, as it runs per time per job.
_utc: Callable[[datetime], datetime] = operator.methodcaller("astimezone", UTC)
#: A status (or its value: they hash alike) as the `JobStatus`; a dict lookup, likewise.
_as_status: Callable[[str], JobStatus] = {status.value: status for status in JobStatus}.__getitem__


_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})",
    flags=re.ASCII,
)


_OFFSET = re.compile(r"[+-](?P<hours>\d{2}):(?P<minutes>\d{2})$", flags=re.ASCII)


def parse_rfc3339(value: object) -> datetime:
    """A timezone-aware datetime from an RFC 3339 string (`Z` or `+hh:mm` required)."""
    if not isinstance(value, str):
        raise TypeError(f"must be an RFC 3339 string, got {_json_type(value)}")
    if not _RFC3339.fullmatch(value):
        raise ValueError(f"{value[:64]!r} is not an RFC 3339 time with an offset")
    offset = _OFFSET.search(value)
    if offset and (int(offset["hours"]) > 23 or int(offset["minutes"]) > 59):
        raise ValueError(
            f"{value!r} is not a valid time: the UTC offset must be between -23:59 and +23:59"
        )
    text = value.upper()
    main, _, fraction_and_zone = text.partition(".")
    if fraction_and_zone:  # Python parses at most 6 fractional digits; RFC 3339 allows more
        digits = re.match(r"\d+", fraction_and_zone)
        assert digits is not None
        zone = fraction_and_zone[digits.end() :]
        text = f"{main}.{digits.group()[:6].ljust(6, '0')}{zone}"
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"{value!r} is not a valid time: {exc}") from None


def _json_type(value: object) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    names |= {list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


@attrs.frozen
class _Kind:
    """How the API shows and reads one `FieldKind`."""

    #: The type of a (non-null) value on the wire, as the OpenAPI schema documents it.
    annotation: Any
    #: Core value -> wire value; None when the value goes out as it is.
    to_wire: Callable[[Any], Any] | None
    #: JSON value of a request body -> core value; raises TypeError/ValueError saying why.
    #: None for a kind only the server ever sets (the attempt history): no field of it
    #: may be in the enqueue body, which `body_readers` checks at import.
    read: Callable[[Any], Any] | None


def _strict_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"must be an integer, got {_json_type(value)}")
    return value


def _strict_str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"must be a string, got {_json_type(value)}")
    return value


def _status(value: object) -> JobStatus:
    try:
        return JobStatus(_strict_str(value))
    except ValueError:
        raise ValueError(f"must be one of {', '.join(JobStatus)}") from None


def _any(value: Any) -> Any:
    return value


@attrs.frozen
class AttemptErrorOut:
    """One failed attempt of a job, as the API shows it (`errors`, newest last)."""

    attempt: Annotated[
        int,
        KwargDefinition(
            description="Which attempt: 1 for the first run since the job was enqueued or"
            " last requeued."
        ),
    ]
    at: Annotated[datetime, KwargDefinition(description="When the attempt ended (UTC).")]
    error: Annotated[
        str,
        KwargDefinition(
            description="How it ended: the handler's error, or what the worker recorded"
            " (a timeout, an expired lease, a cancel)."
        ),
    ]
    traceback: Annotated[
        str | None,
        KwargDefinition(
            description=f"The handler's traceback (its last {MAX_TRACEBACK_LENGTH} characters);"
            " null when no exception was raised."
        ),
    ]


def _errors_out(errors: tuple[AttemptError, ...]) -> tuple[AttemptErrorOut, ...]:
    """The attempt history on the wire, each time in UTC (most jobs have none)."""
    if not errors:
        return ()
    return tuple(
        AttemptErrorOut(error.attempt, _utc(error.at), error.error, error.traceback)
        for error in errors
    )


_STATUS_VALUES: Any = Literal[tuple(status.value for status in JobStatus)]

#: Every kind's wire type and conversions: the one place a kind's JSON form is decided.
#: Times go out as RFC 3339 in UTC (`Z`); a status as its value, documented inline as an
#: enum (a `$ref` to the `JobStatus` component would take the field's description).
_KINDS: dict[FieldKind, _Kind] = {
    FieldKind.ID: _Kind(str, None, _strict_str),
    FieldKind.TEXT: _Kind(str, None, _strict_str),
    FieldKind.JSON: _Kind(Any, None, _any),
    FieldKind.TIME: _Kind(datetime, _utc, parse_rfc3339),
    FieldKind.INT: _Kind(int, None, _strict_int),
    FieldKind.STATUS: _Kind(_STATUS_VALUES, _as_status, _status),
    FieldKind.ERRORS: _Kind(list[AttemptErrorOut], _errors_out, None),
}


def _annotation(spec: FieldSpec) -> Any:
    """The field's wire type, described by its doc and bounded by its range (Litestar
    puts both in the OpenAPI schema)."""
    kind = _KINDS[spec.kind].annotation
    wire = kind | None if spec.nullable and kind is not Any else kind
    low, high = spec.bounds if spec.bounds is not None else (None, None)
    return Annotated[wire, KwargDefinition(description=spec.doc, ge=low, le=high)]


# -- responses ----------------------------------------------------------------------

#: The fields the API shows (`FieldSpec.wire`), in declaration order.
_WIRE = tuple(spec for spec in JOB_SCHEMA if spec.wire)
_read_wire = operator.attrgetter(*(spec.name for spec in _WIRE))
_CONVERSIONS = tuple(
    (index, convert)
    for index, spec in enumerate(_WIRE)
    if (convert := _KINDS[spec.kind].to_wire) is not None
)
_STATUS_AT = next(index for index, spec in enumerate(_WIRE) if spec.kind is FieldKind.STATUS)
_ACTIONS = {status: allowed_actions(status) for status in JobStatus}
_ACTIONS_DOC = (
    "What a client may do to this job now, given its status: any of"
    f" {', '.join(CLIENT_EVENTS)}, each its own endpoint; empty when nothing is allowed."
)


def _job_out_from_job(cls: type[JobOut], job: Job) -> JobOut:
    values = list(_read_wire(job))
    for index, convert in _CONVERSIONS:
        value = values[index]
        if value is not None:
            values[index] = convert(value)
    return cls(*values, _ACTIONS[values[_STATUS_AT]])


def _job_out_class() -> type:
    """`JobOut`: one field per wire field of `JOB_SCHEMA`, in order, then `actions`."""
    annotations = {spec.name: _annotation(spec) for spec in _WIRE}
    annotations["actions"] = Annotated[
        tuple[Literal[CLIENT_EVENTS], ...],  # type: ignore[valid-type]
        KwargDefinition(description=_ACTIONS_DOC),
    ]
    namespace = {
        "__annotations__": annotations,
        "__module__": __name__,
        "__qualname__": "JobOut",
        "__doc__": "A job as the API shows it. Times are RFC 3339 UTC; the lease token is"
        " never shown; `actions` lists what its status allows.",
        "from_job": classmethod(_job_out_from_job),
    }
    return attrs.frozen(type("JobOut", (), namespace))


if TYPE_CHECKING:

    class JobOut:
        """What the type checker sees of the generated class below: an attrs class
        whose fields (those of `JOB_SCHEMA`) are only known at run time."""

        __attrs_attrs__: ClassVar[Any]
        actions: tuple[str, ...]

        def __init__(self, *values: Any) -> None: ...

        def __getattr__(self, name: str) -> Any: ...

        @classmethod
        def from_job(cls, job: Job) -> JobOut:
            """The wire view of a core `Job`."""
            ...

else:
    JobOut = _job_out_class()


@attrs.frozen(kw_only=True)
class JobPageOut:
    """One page of the job list, newest first; `total` counts every match."""

    items: list[JobOut]
    total: int
    limit: int
    offset: int
    #: False when the jobs were listed without payloads (`?payloads=false`): every
    #: `payload` and `result` null, every `errors` empty.
    payloads: bool
    #: True when the page's byte budget ended it before `limit` jobs while more matched;
    #: the next page starts at `offset` + the number of items.
    truncated: bool

    @classmethod
    def from_page(cls, page: JobPage) -> JobPageOut:
        """The wire view of a core `JobPage`."""
        return cls(
            items=[JobOut.from_job(job) for job in page.items],
            total=page.total,
            limit=page.limit,
            offset=page.offset,
            payloads=page.payloads,
            truncated=page.truncated,
        )


def encode_page(page: JobPageOut) -> bytes:
    """The page's JSON, encoded one job at a time.

    Each job is its own short call into the encoder, so a thread running this lets the
    event loop's thread take the GIL between jobs instead of waiting for the whole page.
    """
    parts = [b'{"items":[']
    for item in page.items:
        parts += (encode_json(item), b",")
    if page.items:
        parts.pop()  # the last comma
    rest = encode_json({name: getattr(page, name) for name in _PAGE_FIELDS})
    parts += (b"],", rest[1:])
    return b"".join(parts)  # one copy of the page, however many jobs it holds


_PAGE_FIELDS = tuple(field.name for field in attrs.fields(JobPageOut) if field.name != "items")


@attrs.frozen(kw_only=True)
class StatsOut:
    """Counts per status; `success_rate` is completed / (completed + failed), 0 when none."""

    pending: int
    processing: int
    completed: int
    failed: int
    cancelled: int
    total: int
    success_rate: float

    @classmethod
    def from_stats(cls, stats: JobStats) -> StatsOut:
        """The wire view of core `JobStats`."""
        return cls(
            pending=stats.pending,
            processing=stats.processing,
            completed=stats.completed,
            failed=stats.failed,
            cancelled=stats.cancelled,
            total=stats.total,
            success_rate=stats.success_rate,
        )


@attrs.frozen(kw_only=True)
class TopicOut:
    """One topic: its jobs counted per status, whether it is paused, and its global
    limit (`max_running`: null is none; 0 holds the topic)."""

    topic: str
    counts: dict[str, int]
    running: int
    paused: bool
    max_running: int | None

    @classmethod
    def from_info(cls, info: TopicInfo) -> TopicOut:
        """The wire view of core `TopicInfo`."""
        return cls(
            topic=info.topic,
            counts={status.value: info.counts.get(status, 0) for status in JobStatus},
            running=info.running,
            paused=info.paused,
            max_running=info.max_running,
        )


@attrs.frozen(kw_only=True)
class TopicsOut:
    """Every topic with jobs or a stored policy, by name."""

    items: list[TopicOut]


def parse_limit(raw: bytes) -> int | None:
    """The `{"max_running": N | null}` body of a limit request, or `InvalidBody`."""
    body = load_object(raw, ("max_running",))
    if "max_running" not in body:
        raise InvalidBody("invalid body: max_running: is required", {"max_running": "is required"})
    value = body["max_running"]
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        problem = "must be a non-negative integer or null (no limit)"
        raise InvalidBody(f"invalid body: max_running: {problem}", {"max_running": problem})
    return value


@attrs.frozen(kw_only=True)
class ErrorOut:
    """Every error the API returns: PocketBase's shape. `data` maps fields to problems."""

    status: int
    message: str
    data: dict[str, Any]


# -- the enqueue body ---------------------------------------------------------------


@attrs.frozen
class BodyField:
    """One field of the enqueue body: the job field it sets, and how it may be given."""

    spec: FieldSpec
    #: The body must have it.
    required: bool
    #: It may be `null`, which means "the default".
    nullable: bool

    @property
    def name(self) -> str:
        """The field's name, in the body as in `Job`."""
        return self.spec.name


def _body_fields() -> tuple[BodyField, ...]:
    specs = {spec.name: spec for spec in JOB_SCHEMA}
    arguments = (  # those of `Jobs.enqueue(topic, payload=None)`
        BodyField(specs["topic"], required=True, nullable=False),
        BodyField(specs["payload"], required=False, nullable=True),
    )
    options = tuple(BodyField(specs[name], required=False, nullable=True) for name in OPTION_FIELDS)
    return arguments + options


def body_readers(fields: tuple[BodyField, ...]) -> dict[str, Callable[[Any], Any]]:
    """Each body field's reader, by name; `TypeError` for a field whose kind only the
    server sets (a declaration mistake, caught at import)."""
    readers = {}
    for field in fields:
        read = _KINDS[field.spec.kind].read
        if read is None:
            raise TypeError(
                f"{field.name} is of kind {field.spec.kind.name}, which only the server"
                " sets: it cannot be an enqueue option"
            )
        readers[field.name] = read
    return readers


#: The fields of `POST /api/jobs/enqueue`, in order: the arguments, then every option.
ENQUEUE_BODY: tuple[BodyField, ...] = _body_fields()
ENQUEUE_FIELDS: tuple[str, ...] = tuple(field.name for field in ENQUEUE_BODY)
_READERS = body_readers(ENQUEUE_BODY)


@attrs.frozen(kw_only=True)
class EnqueueIn:
    """`POST /api/jobs/enqueue`, read: the arguments of `Jobs.enqueue_with_options`."""

    topic: str
    payload: Any
    options: EnqueueOptions


#: Most unknown field names one error lists.
_MAX_NAMED = 20


def _refuse_constant(name: str) -> NoReturn:
    raise InvalidBody(f"body is not JSON: {name} is not a JSON value")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidBody(f"body is not accepted: key {key[:64]!r} appears twice in one object")
        result[key] = value
    return result


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def loads_strict(raw: bytes) -> Any:
    """Parse strict JSON (UTF-8, no NaN/Infinity, no duplicate keys) or raise `InvalidBody`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidBody("body is not JSON: it is not valid UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
        if _SURROGATE_ESCAPE.search(text):  # a pair is one character; a lone half is not text
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        return value
    except UnicodeEncodeError:
        raise InvalidBody(
            "body is not accepted: a string has an unpaired surrogate (\\uD800-\\uDFFF)"
        ) from None
    except InvalidBody:
        raise
    except RecursionError:
        raise InvalidBody("body is not accepted: JSON nests too deeply") from None
    except json.JSONDecodeError as exc:
        raise InvalidBody(f"body is not JSON: {exc.msg} at position {exc.pos}") from None
    except ValueError:  # the only other one: an integer with more digits than int() converts
        raise InvalidBody(
            f"body is not accepted: a number has more than {sys.get_int_max_str_digits()} digits"
        ) from None


def load_object(raw: bytes, allowed: Sequence[str]) -> dict[str, Any]:
    """The strict JSON object in `raw` (`loads_strict`) with no field outside `allowed`,
    or `InvalidBody`: every body the API reads is such an object."""
    body = loads_strict(raw)
    if not isinstance(body, dict):
        raise InvalidBody(f"body must be a JSON object, got {_json_type(body)}")
    unknown = sorted(set(body) - set(allowed))[:_MAX_NAMED]  # bounded error size
    if unknown:
        raise InvalidBody(
            f"unknown field(s): {', '.join(name[:64] for name in unknown)};"
            f" allowed: {', '.join(allowed)}",
            {name[:64]: "unknown field" for name in unknown},
        )
    return body


def parse_enqueue(raw: bytes) -> EnqueueIn:
    """The enqueue request in `raw`, or `InvalidBody` naming every field that is wrong."""
    body = load_object(raw, ENQUEUE_FIELDS)
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for field in ENQUEUE_BODY:
        if field.name not in body:
            if field.required:
                problems[field.name] = "is required"
            continue
        value = body[field.name]
        if value is None and field.nullable:
            continue
        try:
            values[field.name] = _READERS[field.name](value)
        except (TypeError, ValueError) as exc:
            problems[field.name] = str(exc)
    if problems:
        detail = "; ".join(f"{name}: {problem}" for name, problem in problems.items())
        raise InvalidBody(f"invalid body: {detail}", problems)
    return EnqueueIn(
        topic=values.pop("topic"),
        payload=values.pop("payload", None),
        options=EnqueueOptions(**values),
    )
