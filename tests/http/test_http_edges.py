"""HEAD, `nosniff`, the schema's unknown paths, repeated parameters and client-facing
messages: the small edges of the HTTP surface."""

from __future__ import annotations

import pytest

from tests.http.conftest import Client, MakeJob, assert_error

GET_ROUTES = [
    "/_/",
    "/_",
    "/_/static/app.js",
    "/schema",
    "/schema/openapi.json",
    "/api/jobs",
    "/api/jobs/stats",
    "/api/health",
]


@pytest.mark.parametrize("path", GET_ROUTES)
async def test_head_answers_like_get_without_a_body(client: Client, path: str) -> None:
    got = await client.get(path)
    head = await client.head(path)
    assert got.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(got.content))
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers.get("cache-control") == got.headers.get("cache-control")


async def test_head_of_a_job_and_of_an_unknown_one(client: Client, make_job: MakeJob) -> None:
    job = await make_job()
    assert (await client.head(f"/api/jobs/{job['id']}")).status_code == 200
    missing = await client.head("/api/jobs/no-such-job")
    assert missing.status_code == 404
    assert missing.content == b""


async def test_head_still_needs_the_token(anon: Client) -> None:
    response = await anon.head("/api/jobs/stats")
    assert response.status_code == 401
    assert response.content == b""


async def test_head_of_a_post_route_is_405(client: Client) -> None:
    response = await client.head("/api/jobs/enqueue")
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/jobs/stats"),
        ("GET", "/api/jobs/nope"),
        ("POST", "/api/jobs/enqueue"),
        ("GET", "/_/"),
        ("GET", "/schema"),
        ("GET", "/schema/swagger"),
        ("GET", "/nowhere"),
        ("DELETE", "/_/"),
    ],
)
async def test_every_response_is_nosniff(client: Client, method: str, path: str) -> None:
    response = await client.request(method, path, json={"topic": "ok"})
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_unauthenticated_responses_are_nosniff(anon: Client) -> None:
    response = await anon.get("/api/jobs")
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/schema/swagger",
        "/schema/redoc",
        "/schema/elements",
        "/schema/rapidoc",
        "/schema/oauth2-redirect.html",
        "/schema/anything",
    ],
)
async def test_unknown_schema_paths_are_the_json_404(anon: Client, path: str) -> None:
    response = await anon.get(path)
    assert assert_error(response, 404)["message"] == "Not Found"
    assert response.headers["cache-control"] == "no-store"
    assert "<h1>" not in response.text


async def test_a_404_cuts_a_long_id(client: Client) -> None:
    response = await client.get("/api/jobs/" + "a" * 10_000)
    body = assert_error(response, 404)
    assert len(response.content) < 200
    assert body["message"] == f"job '{'a' * 64}'... not found"


@pytest.mark.parametrize(
    "query",
    [
        "limit=5&limit=6",
        "offset=0&offset=1",
        "status=pending&status=failed",
        "topic=a&topic=b",
        "foo=1&foo=1",
    ],
)
async def test_a_repeated_query_parameter_is_a_400(client: Client, query: str) -> None:
    body = assert_error(await client.get(f"/api/jobs?{query}"), 400)
    name = query.partition("=")[0]
    assert body["data"] == {name: "given more than once"}


async def test_repeated_parameters_are_refused_on_every_route(client: Client) -> None:
    assert_error(await client.get("/api/jobs/stats?x=1&x=2"), 400)


async def test_repeated_parameters_are_checked_after_the_token(anon: Client) -> None:
    assert_error(await anon.get("/api/jobs?limit=5&limit=6"), 401)


async def test_a_number_too_long_is_named_in_the_clients_terms(client: Client) -> None:
    raw = '{"topic": "ok", "payload": ' + "9" * 4301 + "}"
    response = await client.post(
        "/api/jobs/enqueue", content=raw, headers={"Content-Type": "application/json"}
    )
    message = assert_error(response, 400)["message"]
    assert message == "body is not accepted: a number has more than 4300 digits"
    assert "sys." not in message


@pytest.mark.parametrize("offset", ["+24:00", "+99:99", "-23:60"])
async def test_an_offset_out_of_range_is_named_in_the_clients_terms(
    client: Client, offset: str
) -> None:
    response = await client.post(
        "/api/jobs/enqueue", json={"topic": "ok", "run_at": f"2030-01-01T00:00:00{offset}"}
    )
    body = assert_error(response, 400)
    assert "the UTC offset must be between -23:59 and +23:59" in body["message"]
    assert "timedelta" not in response.text


async def test_the_widest_offsets_are_accepted(client: Client) -> None:
    for offset in ("+23:59", "-23:59"):
        response = await client.post(
            "/api/jobs/enqueue", json={"topic": "ok", "run_at": f"2030-01-01T00:00:00{offset}"}
        )
        assert response.status_code == 200, response.text
