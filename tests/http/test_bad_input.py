"""RELIABILITY.md §4.8: bad input gets a 4xx in the one error shape, never a 5xx.

Each refused enqueue also stores nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobs_core import JOB_SCHEMA

from .conftest import Client, MakeJob, assert_error, assert_job

ENQUEUE = "/api/jobs/enqueue"
JSON = {"Content-Type": "application/json"}


async def _post_raw(
    client: Client, body: bytes | str, headers: dict[str, str] | None = None
) -> Any:
    data = body.encode() if isinstance(body, str) else body
    return await client.post(ENQUEUE, content=data, headers=headers or JSON)


async def _assert_nothing_stored(client: Client) -> None:
    assert (await client.get("/api/jobs/stats")).json()["total"] == 0


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"{",
        b"[]",
        b'"x"',
        b"null",
        b"1",
        b"\xff\xfe{}",
        b'{"topic": "ok"} trailing',
        b"{'topic': 'ok'}",
    ],
)
async def test_body_not_a_json_object(client: Client, body: bytes) -> None:
    assert_error(await _post_raw(client, body), 400)
    await _assert_nothing_stored(client)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/jsonx", None]
)
async def test_content_type_must_be_json(client: Client, content_type: str | None) -> None:
    """Pinned: a JSON body sent with another (or no) Content-Type is 415."""
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = await client.post(ENQUEUE, content=b'{"topic": "ok"}', headers=headers)
    if content_type is None:
        del response  # httpx sends no Content-Type for raw content
        response = await client.post(ENQUEUE, content=b'{"topic": "ok"}')
    assert_error(response, 415)
    await _assert_nothing_stored(client)


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON"])
async def test_json_content_type_variants_accepted(client: Client, content_type: str) -> None:
    response = await _post_raw(client, b'{"topic": "ok"}', {"Content-Type": content_type})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "   ",
        1,
        None,
        [],
        {},
        True,
        "x" * 256,
        "a\x00b",
        "a\nb",
        "tab\there",
        "<img src=x onerror=alert(1)>",
        "ünïcode",
    ],
)
async def test_bad_topic(client: Client, topic: object) -> None:
    body = assert_error(await client.post(ENQUEUE, json={"topic": topic}), 400)
    assert "topic" in body["message"]
    assert set(body["data"]) == {"topic"}
    await _assert_nothing_stored(client)


async def test_missing_topic(client: Client) -> None:
    body = assert_error(await client.post(ENQUEUE, json={"payload": {}}), 400)
    assert body["data"] == {"topic": "is required"}


async def test_topic_of_255_characters_is_fine(client: Client) -> None:
    assert (await client.post(ENQUEUE, json={"topic": "t" * 255})).status_code == 200


async def test_payload_over_one_mib_is_413(client: Client) -> None:
    """A payload over the limit but a body under the envelope: 413 from the core's check."""
    payload = "x" * (1024 * 1024)
    body = assert_error(await client.post(ENQUEUE, json={"topic": "ok", "payload": payload}), 413)
    assert set(body["data"]) == {"payload"}
    await _assert_nothing_stored(client)


async def test_payload_just_under_the_limit_is_accepted(client: Client) -> None:
    payload = "x" * (1024 * 1024 - 2)  # plus two quotes = exactly 1 MiB of JSON
    response = await client.post(ENQUEUE, json={"topic": "ok", "payload": payload})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("payload_text", "why"),
    [
        ("[" * 100_000 + "]" * 100_000, "deep nesting"),
        ('{"a":' * 70 + "1" + "}" * 70, "nesting beyond the payload depth limit"),
        ("1" * 5000, "5000-digit integer"),
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("-Infinity", "-Infinity"),
        ('{"x": NaN}', "nested NaN"),
        ('"a\\u0000b"', "NUL in a string"),
        ('{"a\\u0000": 1}', "NUL in a key"),
        ('{"a": 1, "a": 2}', "duplicate key in the payload"),
        ('"\\ud800"', "lone surrogate"),
    ],
)
async def test_bad_payload(client: Client, payload_text: str, why: str) -> None:
    body = '{"topic": "ok", "payload": ' + payload_text + "}"
    assert_error(await _post_raw(client, body), 400)
    await _assert_nothing_stored(client)


async def test_duplicate_top_level_key(client: Client) -> None:
    body = assert_error(await _post_raw(client, '{"topic": "ok", "topic": "boom"}'), 400)
    assert "twice" in body["message"]


@pytest.mark.parametrize(
    "run_at",
    [
        "tomorrow",
        "2030-01-01",
        "2030-01-01T00:00:00",
        "2030-01-01 00:00:00Z",
        "2024-02-30T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "10000-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",  # PostgreSQL would store -infinity (probe D1)
        "9999-12-31T23:59:59.999999Z",  # ... and infinity
        "0001-01-02T05:00:00+06:00",  # before 0001-01-02 UTC
        "9999-12-30T23:00:00-01:00",  # after 9999-12-30T23:59:59.999999 UTC
        "2030-01-01T25:00:00Z",
        "2030-01-01T00:00:60Z",
        "2030-01-01T00:00:00+25:00",
        "2030-01-01T00:00:00.Z",
        "2030-01-01T00:00:00+0100",
        1893456000,
        1893456000.5,
        True,
        [],
        {},
        "",
    ],
)
async def test_bad_run_at(client: Client, run_at: object) -> None:
    body = assert_error(await client.post(ENQUEUE, json={"topic": "ok", "run_at": run_at}), 400)
    assert "run_at" in body["message"]
    await _assert_nothing_stored(client)


@pytest.mark.parametrize(
    ("run_at", "shown"),
    [
        ("2030-01-01T00:00:00z", "2030-01-01T00:00:00Z"),
        ("2030-01-01t00:00:00+00:00", "2030-01-01T00:00:00Z"),
        ("2030-01-01T00:00:00.123456789Z", "2030-01-01T00:00:00.123456Z"),
        ("2029-12-31T19:00:00-05:00", "2030-01-01T00:00:00Z"),
        ("0001-01-02T00:00:00Z", "0001-01-02T00:00:00Z"),
        ("9999-12-30T23:59:59.999999Z", "9999-12-30T23:59:59.999999Z"),
        (None, None),
    ],
)
async def test_good_run_at(client: Client, run_at: str | None, shown: str | None) -> None:
    response = await client.post(ENQUEUE, json={"topic": "ok", "run_at": run_at})
    assert response.status_code == 200
    if shown is not None:
        assert response.json()["run_at"] == shown


@pytest.mark.parametrize("max_retries", [-1, 1.5, 3.0, "3", True, False, 10**9, 101, [], None])
async def test_bad_max_retries(client: Client, max_retries: object) -> None:
    response = await client.post(ENQUEUE, json={"topic": "ok", "max_retries": max_retries})
    if max_retries is None:  # null means "the default"
        assert response.json()["max_retries"] == 3
        return
    body = assert_error(response, 400)
    assert "max_retries" in body["message"]
    await _assert_nothing_stored(client)


@pytest.mark.parametrize("max_retries", [0, 100])
async def test_max_retries_bounds(client: Client, max_retries: int) -> None:
    response = await client.post(ENQUEUE, json={"topic": "ok", "max_retries": max_retries})
    assert response.json()["max_retries"] == max_retries


@pytest.mark.parametrize(
    "priority", [-101, 101, 10**30, -(10**30), 1.5, 3.0, "3", True, False, [], {}]
)
async def test_bad_priority(client: Client, priority: object) -> None:
    """-100..100 integers only: out of range, a float, a string or a boolean is a 400
    naming the field, and nothing is stored."""
    response = await client.post(ENQUEUE, json={"topic": "ok", "priority": priority})
    body = assert_error(response, 400)
    assert "priority" in body["message"]
    if not isinstance(priority, int) or isinstance(priority, bool):  # refused by its kind
        assert list(body["data"]) == ["priority"]
    await _assert_nothing_stored(client)


@pytest.mark.parametrize(("priority", "stored"), [(-100, -100), (0, 0), (100, 100), (None, 0)])
async def test_priority_bounds_and_default(
    client: Client, priority: int | None, stored: int
) -> None:
    """Both ends are allowed; null (like leaving it out) means the default 0."""
    response = await client.post(ENQUEUE, json={"topic": "ok", "priority": priority})
    assert response.status_code == 200, response.text
    assert response.json()["priority"] == stored
    without = await client.post(ENQUEUE, json={"topic": "ok"})
    assert without.json()["priority"] == 0


SERVER_FIELDS = [
    "status",
    "id",
    "retries",
    "snoozes",
    "locked_until",
    "lock_token",
    "last_error",
    "cancel_requested",
    "errors",
    "result",
    "created",
    "updated",
    "actions",
    "x",
]


@pytest.mark.parametrize("field", SERVER_FIELDS)
async def test_server_fields_cannot_be_set(client: Client, field: str) -> None:
    """Unknown fields, including every server-owned one, are refused by name."""
    body = assert_error(await client.post(ENQUEUE, json={"topic": "ok", field: "completed"}), 400)
    assert field in body["message"]
    assert body["data"] == {field: "unknown field"}
    await _assert_nothing_stored(client)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("errors", []),
        ("errors", None),
        ("errors", [{"attempt": 1, "at": "2025-01-08T12:00:00Z", "error": "x", "traceback": None}]),
        ("result", None),
        ("result", {"sent": 1}),
    ],
)
async def test_the_history_and_the_result_cannot_be_set_in_any_shape(
    client: Client, field: str, value: object
) -> None:
    """Not even an empty history or a null result, which look like the defaults."""
    body = assert_error(await client.post(ENQUEUE, json={"topic": "ok", field: value}), 400)
    assert body["data"] == {field: "unknown field"}
    await _assert_nothing_stored(client)


def test_every_server_owned_job_field_is_tried_above() -> None:
    """A new `Job` field that is not an option must be refused too: it joins the list."""
    tried = set(SERVER_FIELDS)
    owned = {spec.name for spec in JOB_SCHEMA if not spec.option} - {"topic", "payload"}
    assert owned <= tried


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "-1"},
        {"limit": "abc"},
        {"limit": "1e3"},
        {"limit": "501"},
        {"limit": "10.0"},
        {"limit": ""},
        {"limit": " 5"},
        {"limit": "+5"},
        {"offset": "-1"},
        {"offset": "abc"},
        {"offset": str(2**63)},
        {"offset": "1e3"},
        {"status": "bogus"},
        {"status": "PENDING"},
        {"status": ""},
        {"topic": "bad topic"},
        {"topic": "x" * 300},
    ],
)
async def test_bad_list_parameters(client: Client, params: dict[str, str]) -> None:
    assert_error(await client.get("/api/jobs", params=params), 400)


@pytest.mark.parametrize(
    "job_id",
    ["not-a-uuid", "%00", "..%2f..%2fetc", "x" * 10_000, "'; DROP TABLE jobs; --", "%2e%2e"],
)
async def test_odd_ids_are_404_never_500(client: Client, job_id: str) -> None:
    for method, path in [
        ("GET", f"/api/jobs/{job_id}"),
        ("DELETE", f"/api/jobs/{job_id}"),
        ("POST", f"/api/jobs/{job_id}/requeue"),
        ("POST", f"/api/jobs/{job_id}/cancel"),
    ]:
        response = await client.request(method, path)
        assert response.status_code in {400, 404}, (method, path)
        assert_error(response, response.status_code)


async def test_html_in_payload_is_stored_verbatim(client: Client, make_job: MakeJob) -> None:
    """Payloads are data: markup is stored and returned as-is (the UI escapes it)."""
    payload = {"<img src=x onerror=alert(1)>": '"><svg onload=alert(1)>'}
    job = await make_job("pending", payload=payload)
    assert_job(job)
    assert job["payload"] == payload


async def test_unicode_payload_round_trips(client: Client) -> None:
    payload = {"emoji": "😀", "rtl": "مرحبا", "esc": "\u2028"}
    response = await _post_raw(client, json.dumps({"topic": "ok", "payload": payload}))
    assert response.json()["payload"] == payload


async def test_many_unknown_fields_give_a_bounded_error(client: Client) -> None:
    body = {"topic": "ok", **{f"field_{n:05d}_" + "x" * 100: n for n in range(5000)}}
    response = await client.post(ENQUEUE, json=body)
    error = assert_error(response, 400)
    assert len(error["data"]) == 20
    assert len(response.content) < 10_000
