"""Property-based API fuzzing with Hypothesis: random bodies, parameters, ids and methods.

Whatever arrives, the API answers below 500, with a status the served OpenAPI schema
documents for that operation, and a body that matches the schema (or the one error
shape for routes outside it).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from jobs_http import create_app

from .conftest import AUTH, ERROR_KEYS, TOKEN, make_jobs
from .schema_check import response_problems

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
topics = st.sampled_from(["ok", "boom", "send_email", "a.b:c/d-e_f"]) | st.text(max_size=12)
times = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
).map(lambda d: d.isoformat())
run_ats = times | st.text(max_size=30) | json_values
retries = st.integers(min_value=-5, max_value=150) | json_values
extra_keys = st.sampled_from(["status", "id", "retries", "lock_token", "created", "zzz"])


@st.composite
def enqueue_bodies(draw: st.DrawFn) -> bytes:
    """Mostly well-formed objects with a random mix of valid and invalid fields."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=40))
    body: dict[str, Any] = {}
    if draw(st.booleans()) or draw(st.booleans()):
        body["topic"] = draw(topics | json_values)
    if draw(st.booleans()):
        body["payload"] = draw(json_values)
    if draw(st.booleans()):
        body["run_at"] = draw(run_ats)
    if draw(st.booleans()):
        body["max_retries"] = draw(retries)
    if draw(st.integers(0, 5)) == 0:
        body[draw(extra_keys)] = draw(json_values)
    return json.dumps(body).encode()


query_values = (
    st.text(max_size=8)
    | st.integers(-3, 600).map(str)
    | st.sampled_from(["pending", "failed", "PENDING", "1e3", "", "20"])
)
list_params = st.dictionaries(
    st.sampled_from(["topic", "status", "limit", "offset", "other"]), query_values, max_size=4
)
# "." and ".." are dot-segments: clients resolve them away (RFC 3986 §5.2.4) before the
# request is sent, so `/api/jobs/.` reaches the server as the list route, not as an id.
ids = st.text(min_size=1, max_size=40).filter(lambda s: s not in {".", ".."})
methods = st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH"])


def _check(
    client: TestClient[Any], schema: dict[str, Any], method: str, path: str, response: Any
) -> None:
    assert response.status_code < 500, (method, path, response.text)
    body: Any = response.json() if response.content else None
    if response.status_code >= 400:
        assert set(body) == ERROR_KEYS, body
        assert body["status"] == response.status_code
    problems = response_problems(schema, path, method, response.status_code, body)
    assert not problems, problems


def test_fuzz_enqueue_and_read_back() -> None:
    app = create_app(make_jobs(), token=TOKEN, run_worker=False)
    with TestClient(app) as client:
        client.headers.update(AUTH)
        schema = client.get("/schema/openapi.json").json()

        @SETTINGS
        @given(body=enqueue_bodies())
        def run(body: bytes) -> None:
            response = client.post(
                "/api/jobs/enqueue", content=body, headers={"Content-Type": "application/json"}
            )
            _check(client, schema, "POST", "/api/jobs/enqueue", response)
            if response.status_code == 200:
                sent = json.loads(body)
                job = response.json()
                assert job["status"] == "pending"
                assert job["retries"] == 0
                assert job["topic"] == sent["topic"]
                assert job["payload"] == sent.get("payload")
                got = client.get(f"/api/jobs/{job['id']}")
                assert got.json() == job

        run()


def test_fuzz_list_parameters() -> None:
    app = create_app(make_jobs(), token=TOKEN, run_worker=False)
    with TestClient(app) as client:
        client.headers.update(AUTH)
        schema = client.get("/schema/openapi.json").json()
        for i in range(3):
            client.post("/api/jobs/enqueue", json={"topic": "ok", "payload": i})

        @SETTINGS
        @given(params=list_params)
        def run(params: dict[str, str]) -> None:
            response = client.get("/api/jobs", params=params)
            _check(client, schema, "GET", "/api/jobs", response)
            if response.status_code == 200:
                page = response.json()
                assert len(page["items"]) <= page["limit"] <= 500

        run()


def test_fuzz_ids_and_methods() -> None:
    app = create_app(make_jobs(), token=TOKEN, run_worker=False)
    with TestClient(app) as client:
        client.headers.update(AUTH)
        schema = client.get("/schema/openapi.json").json()
        real = client.post("/api/jobs/enqueue", json={"topic": "ok"}).json()["id"]

        @SETTINGS
        @given(
            method=methods,
            job_id=ids | st.just(real),
            suffix=st.sampled_from(["", "/requeue", "/cancel", "/x"]),
            authed=st.booleans(),
        )
        def run(method: str, job_id: str, suffix: str, authed: bool) -> None:
            path = f"/api/jobs/{quote(job_id, safe='')}{suffix}"
            headers = None if authed else {"Authorization": "Bearer wrong"}
            response = client.request(method, path, headers=headers)
            assert response.status_code < 500, (method, path, response.text)
            if not authed:
                assert response.status_code in {401, 404, 405}
            _check(client, schema, method, f"/api/jobs/{job_id}{suffix}", response)

        run()
