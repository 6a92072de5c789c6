"""The JSON shapes of the API (attrs classes) and the strict reading of the enqueue body.

Responses are built from core values here and nowhere else, so the field names of the
seed live in one place. The enqueue body is parsed by hand rather than by Litestar,
because the default decoder is lenient where we must not be:

- NaN / Infinity / -Infinity are refused (they are not JSON);
- a key repeated in one object is refused instead of "last one wins";
- integers too long to convert and nesting too deep for the parser are a 400, not a 500;
- the body must be a JSON object with only the documented fields (`topic`, `payload`,
  `run_at`, `max_retries`); anything else -- `status`, `id`, `retries`... -- is named
  and refused, so a client can never set server-owned fields;
- `max_retries` must be a real integer (`true` is not 1) and `run_at` an RFC 3339 time
  with an explicit offset.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NoReturn

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError
from litestar.serialization import encode_json

from jobs_core import EnqueueOptions, InvalidInput, Job, JobPage, JobStats, JobStatus


class InvalidBody(InvalidInput):
    """The request body is not the JSON the endpoint documents; `data` says which field."""

    def __init__(self, message: str, data: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.data: dict[str, str] = dict(data or {})


# -- responses ----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class JobOut:
    """A job as the API shows it. Times are RFC 3339 UTC; the lease token is never shown."""

    id: str
    topic: str
    payload: Any
    status: JobStatus
    run_at: datetime
    #: When the current lease ends; null unless the job is `processing`.
    locked_until: datetime | None
    retries: int
    max_retries: int
    #: The last failure's message; null if the job never failed.
    last_error: str | None
    created: datetime
    updated: datetime

    @classmethod
    def from_job(cls, job: Job) -> JobOut:
        """The wire view of a core `Job`."""
        return cls(
            id=job.id,
            topic=job.topic,
            payload=job.payload,
            status=JobStatus(job.status),
            run_at=_utc(job.run_at),
            locked_until=_utc(job.locked_until) if job.locked_until is not None else None,
            retries=job.retries,
            max_retries=job.max_retries,
            last_error=job.last_error,
            created=_utc(job.created),
            updated=_utc(job.updated),
        )


@attrs.frozen(kw_only=True)
class JobPageOut:
    """One page of the job list, newest first; `total` counts every match."""

    items: list[JobOut]
    total: int
    limit: int
    offset: int
    #: False when the jobs were listed without payloads (`?payloads=false`): all null.
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
            total=stats.total,
            success_rate=stats.success_rate,
        )


@attrs.frozen(kw_only=True)
class ErrorOut:
    """Every error the API returns: PocketBase's shape. `data` maps fields to problems."""

    status: int
    message: str
    data: dict[str, Any]


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# -- the enqueue body ---------------------------------------------------------------


@attrs.frozen(kw_only=True)
class EnqueueIn:
    """`POST /api/jobs/enqueue`: what a client may set, and nothing else."""

    topic: str
    payload: Any = None
    run_at: datetime | None = None
    max_retries: int | None = None

    def options(self) -> EnqueueOptions:
        """The core's per-job options for this request."""
        return EnqueueOptions(run_at=self.run_at, max_retries=self.max_retries)


ENQUEUE_FIELDS = tuple(field.name for field in attrs.fields(EnqueueIn))
#: Most unknown field names one error lists.
_MAX_NAMED = 20

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


def _strict_int(value: object, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"must be an integer, got {_json_type(value)}")
    return value


def _strict_str(value: object, _: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"must be a string, got {_json_type(value)}")
    return value


def _json_type(value: object) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    names |= {list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _build_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(datetime, lambda value, _: parse_rfc3339(value))
    converter.register_structure_hook(Any, lambda value, _: value)
    return converter


#: Structures request bodies; every type is checked exactly, nothing is coerced.
converter = _build_converter()


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


def parse_enqueue(raw: bytes) -> EnqueueIn:
    """The enqueue request in `raw`, or `InvalidBody` naming every field that is wrong."""
    body = loads_strict(raw)
    if not isinstance(body, dict):
        raise InvalidBody(f"body must be a JSON object, got {_json_type(body)}")
    unknown = sorted(set(body) - set(ENQUEUE_FIELDS))[:_MAX_NAMED]  # bounded error size
    if unknown:
        raise InvalidBody(
            f"unknown field(s): {', '.join(name[:64] for name in unknown)};"
            f" allowed: {', '.join(ENQUEUE_FIELDS)}",
            {name[:64]: "unknown field" for name in unknown},
        )
    try:
        return converter.structure(body, EnqueueIn)
    except ClassValidationError as exc:
        data = _field_problems(exc)
        detail = "; ".join(f"{name}: {problem}" for name, problem in data.items())
        raise InvalidBody(f"invalid body: {detail}", data) from None
    except ForbiddenExtraKeysError as exc:  # pragma: no cover - unknown keys caught above
        raise InvalidBody(f"unknown field(s): {sorted(exc.extra_fields)}") from None


def _field_problems(exc: ClassValidationError) -> dict[str, str]:
    with_notes, without = exc.group_exceptions()
    problems: dict[str, str] = {}
    for error, note in with_notes:
        name = str(note.name)
        problems[name] = "is required" if isinstance(error, KeyError) else _describe(error)
    for error in without:
        problems.setdefault("body", _describe(error))
    return problems


def _describe(error: BaseException) -> str:
    if isinstance(error, ClassValidationError | ExceptionGroup):
        return "; ".join(_describe(inner) for inner in error.exceptions)
    return str(error)
