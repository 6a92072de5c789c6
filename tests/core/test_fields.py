"""The job schema: every `Job` field declared once, and the tuples derived from it."""

from __future__ import annotations

import attrs
import pytest

from jobs_core import (
    CLAIM_FIELDS,
    JOB_FIELDS,
    JOB_SCHEMA,
    MAX_PRIORITY,
    MIN_PRIORITY,
    MUTABLE_FIELDS,
    OPTION_FIELDS,
    TIME_FIELDS,
    WIRE_FIELDS,
    EnqueueOptions,
    FieldKind,
    Job,
)
from jobs_core._fields import job_field, schema_of


def test_every_job_field_is_in_the_schema_in_order() -> None:
    assert tuple(spec.name for spec in JOB_SCHEMA) == tuple(f.name for f in attrs.fields(Job))
    assert tuple(spec.name for spec in JOB_SCHEMA) == JOB_FIELDS


def test_required_fields_are_those_without_a_default() -> None:
    required = {spec.name for spec in JOB_SCHEMA if spec.required}
    assert required == {f.name for f in attrs.fields(Job) if f.default is attrs.NOTHING}
    assert "id" in required
    assert "locked_until" not in required


def test_the_derived_tuples_follow_the_flags() -> None:
    by_name = {spec.name: spec for spec in JOB_SCHEMA}
    assert tuple(n for n in JOB_FIELDS if by_name[n].mutable) == MUTABLE_FIELDS
    assert set(CLAIM_FIELDS) <= set(MUTABLE_FIELDS)
    assert "lock_token" not in WIRE_FIELDS
    assert tuple(f.name for f in attrs.fields(EnqueueOptions)) == OPTION_FIELDS
    assert tuple(n for n in JOB_FIELDS if by_name[n].kind is FieldKind.TIME) == TIME_FIELDS
    assert {"run_at", "locked_until", "created", "updated"} <= set(TIME_FIELDS)
    assert all(by_name[n].kind is FieldKind.TIME for n in TIME_FIELDS)


def test_nullable_fields_default_to_none() -> None:
    for spec in JOB_SCHEMA:
        if spec.nullable:
            assert spec.default is None, spec.name


def test_a_class_with_an_undeclared_field_is_refused() -> None:
    @attrs.frozen
    class Partial:
        declared: int = job_field(FieldKind.INT, default=0)
        plain: int = 0

    with pytest.raises(TypeError, match=r"Partial\.plain is not declared with job_field"):
        schema_of(Partial)


def test_a_field_s_doc_reaches_its_spec() -> None:
    @attrs.frozen
    class One:
        count: int = job_field(FieldKind.INT, mutable=True, doc="How many.", default=1)

    (spec,) = schema_of(One)
    assert (spec.name, spec.kind, spec.mutable, spec.doc, spec.default) == (
        "count",
        FieldKind.INT,
        True,
        "How many.",
        1,
    )


def test_bounds_belong_to_int_fields_with_low_at_most_high() -> None:
    assert job_field(FieldKind.INT, bounds=(1, 1)) is not None
    with pytest.raises(TypeError, match="need an INT field"):
        job_field(FieldKind.TEXT, bounds=(0, 1))
    with pytest.raises(TypeError, match="low <= high"):
        job_field(FieldKind.INT, bounds=(2, 1))


def test_the_priority_is_the_one_bounded_field() -> None:
    """Its range is the public constants', and stores enforce it with a CHECK."""
    bounded = {spec.name: spec.bounds for spec in JOB_SCHEMA if spec.bounds is not None}
    assert bounded == {"priority": (MIN_PRIORITY, MAX_PRIORITY)}
    assert (MIN_PRIORITY, MAX_PRIORITY) == (-100, 100)
    (priority,) = (spec for spec in JOB_SCHEMA if spec.name == "priority")
    assert (priority.option, priority.mutable, priority.default) == (True, False, 0)
