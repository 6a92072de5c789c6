"""The job the API shows and the enqueue body it reads are derived from `JOB_SCHEMA`.

The wire bytes are pinned (field names, order, time format, `actions`); the OpenAPI
schema carries each field's doc; every job the API returns lists the `actions` its
status allows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import attrs
import pytest
from litestar.serialization import encode_json

from jobs_core import (
    CLIENT_EVENTS,
    JOB_SCHEMA,
    MAX_PRIORITY,
    MAX_RETRIES_LIMIT,
    MIN_PRIORITY,
    OPTION_FIELDS,
    WIRE_FIELDS,
    AttemptError,
    FieldKind,
    Job,
    JobStatus,
    allowed_actions,
)
from jobs_http import JobOut
from jobs_http._api import _BODY_KINDS
from jobs_http._wire import (
    _KINDS,
    ENQUEUE_BODY,
    ENQUEUE_FIELDS,
    BodyField,
    body_readers,
    parse_enqueue,
)

from .conftest import ACTIONS, ATTEMPT_KEYS, Client, MakeJob

NOW = datetime(2025, 1, 8, 12, 0, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))
SPECS = {spec.name: spec for spec in JOB_SCHEMA}


def _job(
    status: JobStatus,
    cancel_requested: datetime | None = None,
    errors: tuple[AttemptError, ...] = (),
    result: Any = None,
    priority: int = 0,
    *,
    unique_key: str | None = None,
) -> Job:
    processing = status is JobStatus.PROCESSING
    return Job(
        id="0190a8c4-1b2c-7d3e-8f40-123456789abc",
        topic="send_email",
        payload={"to": "a@example.com"},
        status=status,
        run_at=NOW.astimezone(PLUS_TWO),  # shown in UTC whatever zone it came in
        locked_until=NOW + timedelta(minutes=5) if processing else None,
        lock_token="secret-lease-token" if processing else None,
        retries=1,
        max_retries=3,
        priority=priority,
        unique_key=unique_key,
        last_error="boom" if status is JobStatus.FAILED else None,
        cancel_requested=cancel_requested,
        errors=errors,
        result=result,
        created=NOW,
        updated=NOW + timedelta(microseconds=5),
    )


def test_the_wire_bytes_of_a_job_are_pinned() -> None:
    """Field names, order, RFC 3339 UTC times, nulls and actions: exactly these bytes.

    Changed on purpose for cancellation: `cancel_requested` (null unless a client asked
    to cancel the running job) joined the wire, and `cancel` the actions of a running job.
    And for snoozes: `snoozes` (how often the handler snoozed the job) joined it. And
    for the attempt history and results: `errors` (`[]` until an attempt fails) and
    `result` (null until the job completes) joined it. And for priorities: `priority`
    (-100..100, 0 unless enqueued with one) joined it. And for unique jobs: `unique_key`
    (null unless enqueued with one) joined it.
    """
    job = _job(JobStatus.PROCESSING, priority=-7, unique_key="report:7")
    assert encode_json(JobOut.from_job(job)) == (
        b'{"actions":["cancel"],"cancel_requested":null,"created":"2025-01-08T12:00:00Z",'
        b'"errors":[],"id":"0190a8c4-1b2c-7d3e-8f40-123456789abc","last_error":null,'
        b'"locked_until":"2025-01-08T12:05:00Z","max_retries":3,'
        b'"payload":{"to":"a@example.com"},"priority":-7,"result":null,"retries":1,"run_at":"2025-01-08T12:00:00Z",'
        b'"snoozes":0,"status":"processing","topic":"send_email","unique_key":"report:7",'
        b'"updated":"2025-01-08T12:00:00.000005Z"}'
    )
    asked = (NOW + timedelta(minutes=1, microseconds=250)).astimezone(PLUS_TWO)
    assert encode_json(JobOut.from_job(_job(JobStatus.PROCESSING, asked))) == (
        b'{"actions":["cancel"],"cancel_requested":"2025-01-08T12:01:00.000250Z",'
        b'"created":"2025-01-08T12:00:00Z",'
        b'"errors":[],"id":"0190a8c4-1b2c-7d3e-8f40-123456789abc","last_error":null,'
        b'"locked_until":"2025-01-08T12:05:00Z","max_retries":3,'
        b'"payload":{"to":"a@example.com"},"priority":0,"result":null,"retries":1,"run_at":"2025-01-08T12:00:00Z",'
        b'"snoozes":0,"status":"processing","topic":"send_email","unique_key":null,'
        b'"updated":"2025-01-08T12:00:00.000005Z"}'
    )
    assert encode_json(JobOut.from_job(_job(JobStatus.FAILED))) == (
        b'{"actions":["requeue","delete"],"cancel_requested":null,'
        b'"created":"2025-01-08T12:00:00Z",'
        b'"errors":[],"id":"0190a8c4-1b2c-7d3e-8f40-123456789abc","last_error":"boom",'
        b'"locked_until":null,"max_retries":3,'
        b'"payload":{"to":"a@example.com"},"priority":0,"result":null,"retries":1,"run_at":"2025-01-08T12:00:00Z",'
        b'"snoozes":0,"status":"failed","topic":"send_email","unique_key":null,'
        b'"updated":"2025-01-08T12:00:00.000005Z"}'
    )


def test_the_wire_bytes_of_a_history_and_a_result_are_pinned() -> None:
    """Each failed attempt is `{at, attempt, error, traceback}` with its time in UTC (`Z`)
    whatever zone it was recorded in; the result is the handler's JSON as it returned it
    (keys in its order)."""
    first = (NOW + timedelta(seconds=1)).astimezone(PLUS_TWO)
    second = NOW + timedelta(seconds=2, microseconds=30)
    history = (
        AttemptError(attempt=1, at=first, error="boom", traceback='Traceback:\n  File "h.py"\n'),
        AttemptError(attempt=2, at=second, error="lock expired", traceback=None),
    )
    job = _job(JobStatus.COMPLETED, errors=history, result={"sent": 2, "ids": ["a", "b"]})
    assert encode_json(JobOut.from_job(job)) == (
        b'{"actions":[],"cancel_requested":null,"created":"2025-01-08T12:00:00Z",'
        b'"errors":['
        b'{"at":"2025-01-08T12:00:01Z","attempt":1,"error":"boom",'
        b'"traceback":"Traceback:\\n  File \\"h.py\\"\\n"},'
        b'{"at":"2025-01-08T12:00:02.000030Z","attempt":2,"error":"lock expired",'
        b'"traceback":null}],'
        b'"id":"0190a8c4-1b2c-7d3e-8f40-123456789abc","last_error":null,'
        b'"locked_until":null,"max_retries":3,'
        b'"payload":{"to":"a@example.com"},"priority":0,"result":{"sent":2,"ids":["a","b"]},"retries":1,'
        b'"run_at":"2025-01-08T12:00:00Z",'
        b'"snoozes":0,"status":"completed","topic":"send_email","unique_key":null,'
        b'"updated":"2025-01-08T12:00:00.000005Z"}'
    )


def test_job_out_has_the_wire_fields_of_the_schema_then_actions() -> None:
    assert [field.name for field in attrs.fields(JobOut)] == [*WIRE_FIELDS, "actions"]
    assert "lock_token" not in WIRE_FIELDS  # the lease token is never shown


@pytest.mark.parametrize("status", list(JobStatus))
def test_actions_are_what_the_status_allows(status: JobStatus) -> None:
    out = JobOut.from_job(_job(status))
    assert list(out.actions) == ACTIONS[status.value]
    assert out.actions == allowed_actions(status)
    assert out.status is status


def test_a_status_given_as_text_is_shown_as_the_status() -> None:
    """A store handing back `"failed"` instead of `JobStatus.FAILED` changes nothing."""
    job = attrs.evolve(_job(JobStatus.FAILED), status=cast(JobStatus, "failed"))
    out = JobOut.from_job(job)
    assert out.status is JobStatus.FAILED
    assert out.actions == ("requeue", "delete")


def test_every_field_kind_has_a_wire_form_and_a_body_schema() -> None:
    """A new kind must be given both before any field of that kind can be shown or set.

    Every kind has a wire form. Every kind a body can carry (it has a reader) has a body
    schema; the attempt history is the one kind only the server sets.
    """
    assert set(_KINDS) == set(FieldKind)
    readable = {kind for kind, wire in _KINDS.items() if wire.read is not None}
    assert set(_BODY_KINDS) == readable
    assert set(FieldKind) - readable == {FieldKind.ERRORS}
    assert {field.spec.kind for field in ENQUEUE_BODY} <= readable


def test_a_field_only_the_server_sets_cannot_be_an_enqueue_option() -> None:
    """Declaring an option of such a kind fails at import, not on a client's request."""
    history = BodyField(SPECS["errors"], required=False, nullable=True)
    with pytest.raises(TypeError, match="errors is of kind ERRORS, which only the server sets"):
        body_readers((*ENQUEUE_BODY, history))
    assert list(body_readers(ENQUEUE_BODY)) == list(ENQUEUE_FIELDS)


def test_the_enqueue_body_is_the_arguments_then_every_option() -> None:
    assert ("topic", "payload", *OPTION_FIELDS) == ENQUEUE_FIELDS
    body = parse_enqueue(b'{"topic": "t", "run_at": "2030-01-01T02:00:00+02:00"}')
    assert body.options.run_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert body.options.max_retries is None
    assert body.options.priority is None
    assert body.payload is None
    assert parse_enqueue(b'{"topic": "t", "priority": -100}').options.priority == -100


@pytest.fixture
async def schema(anon: Client) -> dict[str, Any]:
    response = await anon.get("/schema/openapi.json")
    return response.json()  # type: ignore[no-any-return]


def test_openapi_job_fields_carry_each_fields_doc(schema: dict[str, Any]) -> None:
    properties = schema["components"]["schemas"]["JobOut"]["properties"]
    for name in WIRE_FIELDS:
        assert properties[name]["description"] == SPECS[name].doc, name
    assert properties["status"]["enum"] == [status.value for status in JobStatus]
    assert properties["run_at"]["format"] == "date-time"
    for nullable_time in ("locked_until", "cancel_requested"):
        assert properties[nullable_time]["oneOf"] == [
            {"type": "string", "format": "date-time"},
            {"type": "null"},
        ]
    assert properties["errors"]["type"] == "array"
    assert properties["errors"]["items"] == {"$ref": "#/components/schemas/AttemptErrorOut"}
    assert "type" not in properties["result"]  # any JSON value, null included
    assert properties["priority"]["type"] == "integer"
    assert (properties["priority"]["minimum"], properties["priority"]["maximum"]) == (-100, 100)
    assert "minimum" not in properties["retries"]  # only a field with bounds has a range
    actions = properties["actions"]
    assert actions["type"] == "array"
    assert actions["items"] == {"type": "string", "enum": list(CLIENT_EVENTS)}
    assert "requeue" in actions["description"]
    assert "cancel" in actions["description"]


def test_openapi_documents_each_failed_attempt(schema: dict[str, Any]) -> None:
    """The four keys of an attempt, all required (a missing traceback is null), described."""
    attempt = schema["components"]["schemas"]["AttemptErrorOut"]
    assert attempt["type"] == "object"
    assert set(attempt["required"]) == set(attempt["properties"]) == ATTEMPT_KEYS
    properties = attempt["properties"]
    assert properties["attempt"]["type"] == "integer"
    assert properties["at"] == {
        "type": "string",
        "format": "date-time",
        "description": "When the attempt ended (UTC).",
    }
    assert properties["error"]["type"] == "string"
    assert properties["traceback"]["oneOf"] == [{"type": "string"}, {"type": "null"}]
    assert all(properties[name]["description"] for name in ATTEMPT_KEYS)


def test_openapi_enqueue_body_is_derived_from_the_options(schema: dict[str, Any]) -> None:
    body = schema["paths"]["/api/jobs/enqueue"]["post"]["requestBody"]
    spec = body["content"]["application/json"]["schema"]
    assert list(spec["properties"]) == list(ENQUEUE_FIELDS)
    for name in ENQUEUE_FIELDS:
        assert SPECS[name].doc in spec["properties"][name]["description"], name
    for name in OPTION_FIELDS:  # null means "the default"
        assert "null" in spec["properties"][name]["type"], name
    assert spec["properties"]["run_at"]["type"] == ["string", "null"]
    assert spec["properties"]["run_at"]["format"] == "date-time"
    assert spec["properties"]["run_at"]["description"].startswith("RFC 3339 time with offset.")
    assert spec["properties"]["max_retries"]["type"] == ["integer", "null"]
    assert spec["properties"]["max_retries"]["minimum"] == 0  # the field's own rule
    assert spec["properties"]["max_retries"]["maximum"] == MAX_RETRIES_LIMIT
    priority = spec["properties"]["priority"]
    assert priority["type"] == ["integer", "null"]
    assert (priority["minimum"], priority["maximum"]) == (MIN_PRIORITY, MAX_PRIORITY)
    assert "Larger runs first" in priority["description"]
    assert spec["properties"]["topic"]["type"] == "string"
    assert spec["properties"]["topic"]["maxLength"] == 255


async def test_every_job_the_api_returns_lists_its_actions(
    client: Client, make_job: MakeJob
) -> None:
    """Enqueue, get, list (with and without payloads), requeue and cancel all say
    `actions`."""
    later = {"run_at": "2030-01-01T00:00:00Z"}  # stays pending while the others run
    enqueued = (await client.post("/api/jobs/enqueue", json={"topic": "ok", **later})).json()
    assert enqueued["actions"] == ["cancel", "delete"]
    jobs = {
        status: await make_job(status, **(later if status == "pending" else {}))
        for status in ACTIONS
    }
    for status, job in jobs.items():
        assert job["actions"] == ACTIONS[status]  # GET /api/jobs/{id}
        for payloads in ("true", "false"):
            page = await client.get("/api/jobs", params={"status": status, "payloads": payloads})
            items = page.json()["items"]
            assert items
            assert all(item["actions"] == ACTIONS[status] for item in items)
    requeued = await client.post(f"/api/jobs/{jobs['failed']['id']}/requeue")
    assert requeued.json()["status"] == "pending"
    assert requeued.json()["actions"] == ["cancel", "delete"]
    cancelled = await client.post(f"/api/jobs/{enqueued['id']}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["actions"] == ["requeue", "delete"]
    asked = await client.post(f"/api/jobs/{jobs['processing']['id']}/cancel")
    assert asked.json()["status"] == "processing"
    assert asked.json()["actions"] == ["cancel"]
