"""The job schema: each `Job` field declared once, with what every layer needs to know.

A field's declaration on `Job` (`job_field(...)`) carries its kind and its roles. The
stores build their columns and row codecs from `JOB_SCHEMA`, the HTTP adapter builds
its job shape, and the core derives `JOB_FIELDS`, `MUTABLE_FIELDS` and the rest, so a
new field is one declaration here plus one migration step per store and the field's
own rule (see docs/architecture.md).
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

_KEY = "jobs_core.field"


class FieldKind(enum.Enum):
    """What a field holds, which decides how each store keeps it and the wire shows it."""

    #: The job's id: a canonical lower-case UUID string.
    ID = "id"
    #: A string.
    TEXT = "text"
    #: Any JSON value.
    JSON = "json"
    #: A timezone-aware instant within `EARLIEST_TIME`..`LATEST_TIME`.
    TIME = "time"
    #: An integer.
    INT = "int"
    #: A `JobStatus`.
    STATUS = "status"
    #: The attempt history: a tuple of `AttemptError`, newest last, kept as JSON
    #: (`errors_to_json` / `errors_from_json`).
    ERRORS = "errors"


@attrs.frozen(kw_only=True)
class FieldSpec:
    """One field of `Job` and its roles.

    - `nullable`: the field may hold `None`.
    - `mutable`: a guarded write (`JobUpdate`) may change it; other fields never change
      once a job is stored.
    - `option`: a client may set it when enqueuing (an `EnqueueOptions` field of the
      same name, `None` there meaning "the default").
    - `wire`: the API shows it (the lease token, for one, is never shown).
    - `claim`: a claim sets it (stores write these in their claim statement).
    - `bulky`: it may be large (the payload, the attempt history, the result): a listing
      without payloads leaves it unread (`unread`), and a page's byte budget counts its
      stored JSON.
    - `bounds`: `(low, high)`, the inclusive range of an `INT` field, or None; the
      stores enforce it with a CHECK (validation refuses a value outside it first).
    """

    name: str
    kind: FieldKind
    nullable: bool
    mutable: bool
    option: bool
    wire: bool
    claim: bool
    bulky: bool
    doc: str
    #: The value a new job gets when none is given; `attrs.NOTHING` when required.
    default: Any = attrs.field(default=attrs.NOTHING, eq=False)
    bounds: tuple[int, int] | None = None

    @property
    def required(self) -> bool:
        """Whether a `Job` cannot be built without a value for it."""
        return self.default is attrs.NOTHING

    @property
    def unread(self) -> Any:
        """What a listing that leaves this bulky field unread puts in its place: its
        default, or None for a required field."""
        return None if self.required else self.default


def job_field(
    kind: FieldKind,
    *,
    nullable: bool = False,
    mutable: bool = False,
    option: bool = False,
    wire: bool = True,
    claim: bool = False,
    bulky: bool = False,
    doc: str = "",
    default: Any = attrs.NOTHING,
    bounds: tuple[int, int] | None = None,
    repr: bool = True,
) -> Any:
    """An attrs field of `Job` carrying its `FieldSpec` (the name is filled in later)."""
    if bounds is not None and (kind is not FieldKind.INT or bounds[0] > bounds[1]):
        raise TypeError(f"bounds {bounds} need an INT field and low <= high")
    return attrs.field(
        default=default,
        repr=repr,
        metadata={
            _KEY: {
                "kind": kind,
                "nullable": nullable,
                "mutable": mutable,
                "option": option,
                "wire": wire,
                "claim": claim,
                "bulky": bulky,
                "doc": doc,
                "bounds": bounds,
            }
        },
    )


def schema_of(cls: type) -> tuple[FieldSpec, ...]:
    """The `FieldSpec` of each field of the attrs class `cls`, in declaration order."""
    specs = []
    for field in attrs.fields(cls):
        meta = field.metadata.get(_KEY)
        if meta is None:
            raise TypeError(f"{cls.__name__}.{field.name} is not declared with job_field()")
        specs.append(FieldSpec(name=field.name, default=field.default, **meta))
    return tuple(specs)
