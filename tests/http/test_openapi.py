"""The served OpenAPI schema describes every endpoint, body and error; it is public."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import (
    ERROR_KEYS,
    HIDDEN_JOB_KEYS,
    JOB_KEYS,
    PAGE_KEYS,
    SEED_JOB_KEYS,
    SEED_STATS_KEYS,
    STATS_KEYS,
    Client,
    MakeJob,
)
from .schema_check import problems, response_problems

OPERATIONS = {
    ("/api/jobs/enqueue", "post"): {"200", "400", "401", "413", "415", "500", "503"},
    ("/api/jobs", "get"): {"200", "400", "401", "500", "503"},
    ("/api/jobs/stats", "get"): {"200", "401", "500", "503"},
    ("/api/jobs/{job_id}", "get"): {"200", "400", "401", "404", "500", "503"},
    ("/api/jobs/{job_id}/requeue", "post"): {"200", "400", "401", "404", "409", "500", "503"},
    ("/api/jobs/{job_id}/cancel", "post"): {"200", "400", "401", "404", "409", "500", "503"},
    ("/api/jobs/{job_id}", "delete"): {"204", "400", "401", "404", "409", "500", "503"},
    ("/api/topics", "get"): {"200", "401", "500", "503"},
    ("/api/topics/{topic}/pause", "post"): {"200", "400", "401", "500", "503"},
    ("/api/topics/{topic}/resume", "post"): {"200", "400", "401", "500", "503"},
    ("/api/topics/{topic}/limit", "put"): {"200", "400", "401", "415", "500", "503"},
    ("/api/jobs/bulk/requeue", "post"): {"200", "400", "401", "415", "500", "503"},
    ("/api/jobs/bulk/delete", "post"): {"200", "400", "401", "415", "500", "503"},
    ("/api/jobs/bulk/cancel", "post"): {"200", "400", "401", "415", "500", "503"},
    ("/api/schedules", "get"): {"200", "401", "500", "503"},
    ("/api/schedules/{name}", "get"): {"200", "400", "401", "404", "500", "503"},
    ("/api/schedules/{name}", "put"): {"200", "400", "401", "415", "500", "503"},
    ("/api/schedules/{name}", "delete"): {"204", "400", "401", "404", "500", "503"},
    ("/api/schedules/{name}/pause", "post"): {"200", "400", "401", "404", "500", "503"},
    ("/api/schedules/{name}/resume", "post"): {"200", "400", "401", "404", "500", "503"},
    ("/api/health", "get"): {"200", "503"},
}
#: Operations served without a token (every other one needs the superuser's).
PUBLIC_OPERATIONS = {("/api/health", "get")}


@pytest.fixture
async def schema(anon: Client) -> dict[str, Any]:
    response = await anon.get("/schema/openapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def test_every_endpoint_and_status_is_documented(schema: dict[str, Any]) -> None:
    found = {
        (path, method)
        for path, item in schema["paths"].items()
        for method in item
        if method in {"get", "post", "delete", "put", "patch"}
    }
    assert found == set(OPERATIONS)
    for (path, method), statuses in OPERATIONS.items():
        op = schema["paths"][path][method]
        assert set(op["responses"]) == statuses, (path, method)
        if (path, method) in PUBLIC_OPERATIONS:
            assert op.get("security", []) == []
            continue
        assert op["security"] == [{"superuser": []}]
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/ErrorOut"


def test_component_shapes_match_the_seed(schema: dict[str, Any]) -> None:
    """A job is the model's wire fields and `actions`, all required; that keeps every key
    of the seed's shape and leaves the lease token out."""
    components = schema["components"]["schemas"]
    job = components["JobOut"]
    assert set(job["properties"]) == JOB_KEYS
    assert set(job["required"]) == JOB_KEYS
    assert SEED_JOB_KEYS - set(job["properties"]) == set()
    assert HIDDEN_JOB_KEYS & set(job["properties"]) == set()
    assert set(components["JobPageOut"]["properties"]) == PAGE_KEYS
    assert set(components["StatsOut"]["properties"]) == STATS_KEYS
    assert set(components["StatsOut"]["required"]) >= SEED_STATS_KEYS
    assert set(components["ErrorOut"]["required"]) == ERROR_KEYS
    assert components["JobStatus"]["enum"] == [
        "pending",
        "processing",
        "completed",
        "failed",
        "cancelled",
    ]
    assert schema["components"]["securitySchemes"]["superuser"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The superuser token.",
    }


def test_enqueue_body_is_documented(schema: dict[str, Any]) -> None:
    body = schema["paths"]["/api/jobs/enqueue"]["post"]["requestBody"]
    assert body["required"] is True
    spec = body["content"]["application/json"]["schema"]
    assert set(spec["properties"]) == {
        "topic",
        "payload",
        "run_at",
        "max_retries",
        "priority",
        "unique_key",
    }
    assert spec["required"] == ["topic"]
    assert spec["additionalProperties"] is False
    good = {"topic": "send_email", "payload": {"a": 1}, "run_at": "2030-01-01T00:00:00Z"}
    assert problems(good, spec, schema) == []
    assert problems({**good, "priority": -100}, spec, schema) == []
    assert problems({"topic": "x", "status": "completed"}, spec, schema)
    assert problems({"topic": "x", "priority": 101}, spec, schema)
    assert problems({**good, "unique_key": "report:1"}, spec, schema) == []
    assert problems({**good, "unique_key": None}, spec, schema) == []
    key = spec["properties"]["unique_key"]
    assert (key["minLength"], key["maxLength"]) == (1, 255)
    assert "Jobs-Duplicate" in key["description"]
    assert problems({"topic": "x", "unique_key": 7}, spec, schema)


def test_the_duplicate_header_is_documented(schema: dict[str, Any]) -> None:
    """A duplicate enqueue answers 200 with `Jobs-Duplicate: true`; the 200 says so, and
    a requeue's 409 names the held key as one cause."""
    ok = schema["paths"]["/api/jobs/enqueue"]["post"]["responses"]["200"]
    assert "true" in ok["headers"]["Jobs-Duplicate"]["description"]
    conflict = schema["paths"]["/api/jobs/{job_id}/requeue"]["post"]["responses"]["409"]
    assert "unique key" in conflict["description"]


def test_list_parameters_are_documented(schema: dict[str, Any]) -> None:
    params = {p["name"]: p for p in schema["paths"]["/api/jobs"]["get"]["parameters"]}
    assert set(params) == {"topic", "status", "limit", "offset", "payloads"}
    assert params["limit"]["schema"]["minimum"] == 1
    assert params["limit"]["schema"]["maximum"] == 500
    assert params["limit"]["schema"]["default"] == 20
    assert params["offset"]["schema"]["minimum"] == 0
    assert params["payloads"]["schema"]["type"] == "boolean"
    assert params["payloads"]["schema"]["default"] is True


async def test_real_responses_match_the_schema(
    client: Client, schema: dict[str, Any], make_job: MakeJob
) -> None:
    failed = await make_job("failed", max_retries=1)  # two attempts, each with a traceback
    processing = await make_job("processing")
    pending = await make_job("pending")
    completed = await make_job("completed", topic="echo", payload={"a": [1]})
    assert len(failed["errors"]) == 2
    assert completed["result"] == {"echo": {"a": [1]}}
    calls = [
        ("GET", f"/api/jobs/{completed['id']}"),
        ("GET", "/api/jobs"),
        ("GET", "/api/jobs?payloads=false"),
        ("GET", "/api/jobs/stats"),
        ("GET", f"/api/jobs/{failed['id']}"),
        ("GET", f"/api/jobs/{processing['id']}"),
        ("GET", "/api/jobs/missing"),
        ("GET", "/api/jobs?limit=0"),
        ("POST", f"/api/jobs/{processing['id']}/requeue"),
        ("POST", f"/api/jobs/{failed['id']}/requeue"),
        ("POST", f"/api/jobs/{processing['id']}/cancel"),
        ("GET", f"/api/jobs/{processing['id']}"),
        ("POST", f"/api/jobs/{pending['id']}/cancel"),
        ("POST", f"/api/jobs/{pending['id']}/cancel"),
        ("POST", "/api/jobs/missing/cancel"),
        ("DELETE", f"/api/jobs/{processing['id']}"),
        ("DELETE", f"/api/jobs/{failed['id']}"),
    ]
    for method, url in calls:
        response = await client.request(method, url)
        body = response.json() if response.content else None
        path = url.partition("?")[0]
        assert response_problems(schema, path, method, response.status_code, body) == [], url


async def test_schema_is_plain_json_at_both_paths(anon: Client, schema: dict[str, Any]) -> None:
    """/schema and /schema/openapi.json serve the same JSON; no HTML viewer pulls in a CDN."""
    response = await anon.get("/schema")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/")
    assert response.json() == schema


def test_health_is_documented_as_its_own_shape(schema: dict[str, Any]) -> None:
    op = schema["paths"]["/api/health"]["get"]
    for status in ("200", "503"):
        ref = op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/HealthOut"
    health = schema["components"]["schemas"]["HealthOut"]
    assert health["required"] == ["status"]
    assert set(health["properties"]) == {"status"}
    assert set(health["properties"]["status"]["enum"]) == {"ok", "unavailable"}
