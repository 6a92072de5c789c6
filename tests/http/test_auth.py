"""Superuser auth on every API route: 401 for missing, malformed and wrong tokens."""

from __future__ import annotations

import hmac
from typing import Any
from unittest import mock

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from jobs_http import create_app, is_public, public_paths

from .conftest import AUTH, TOKEN, Client, MakeJob, assert_error, make_jobs

BAD_HEADERS: list[dict[str, str]] = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": TOKEN},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": f"Token {TOKEN}"},
    {"Authorization": f"Bearer {TOKEN} extra"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": "Bearer " + "A" * 10_000},
    {"Authorization": f"Bearer {TOKEN.upper()}"},
]

#: One request per API route and method; `{id}` is replaced by a real job id.
ROUTES = [
    ("POST", "/api/jobs/enqueue"),
    ("GET", "/api/jobs"),
    ("GET", "/api/jobs/stats"),
    ("GET", "/api/jobs/{id}"),
    ("POST", "/api/jobs/{id}/requeue"),
    ("POST", "/api/jobs/{id}/cancel"),
    ("DELETE", "/api/jobs/{id}"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("headers", BAD_HEADERS, ids=range(len(BAD_HEADERS)))
async def test_every_route_refuses_bad_credentials(
    anon: Client, make_job: MakeJob, method: str, path: str, headers: dict[str, str]
) -> None:
    job = await make_job("failed")
    response = await anon.request(
        method,
        path.format(id=job["id"]),
        headers=headers,
        json={"topic": "ok"} if method == "POST" else None,
    )
    body = assert_error(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in response.text
    assert "A" * 100 not in response.text
    assert body["data"] == {}


async def test_refused_requests_change_nothing(
    anon: Client, client: Client, make_job: MakeJob
) -> None:
    failed = await make_job("failed")
    pending = await make_job("pending")
    for method, path in ROUTES:
        for job in (failed, pending):
            response = await anon.request(
                method,
                path.format(id=job["id"]),
                json={"topic": "ok"} if method == "POST" else None,
            )
            assert response.status_code == 401
    assert (await client.get("/api/jobs")).json()["total"] == 2
    assert (await client.get(f"/api/jobs/{failed['id']}")).json() == failed
    assert (await client.get(f"/api/jobs/{pending['id']}")).json() == pending


async def test_token_in_query_string_is_not_accepted(anon: Client) -> None:
    assert_error(await anon.get("/api/jobs", params={"token": TOKEN}), 401)
    assert_error(await anon.get("/api/jobs", params={"access_token": TOKEN}), 401)


async def test_no_enumeration_before_auth(anon: Client) -> None:
    """An unauthenticated GET of a job that does not exist is 401, not 404."""
    assert_error(await anon.get("/api/jobs/01234567-89ab-cdef-0123-456789abcdef"), 401)
    assert_error(await anon.delete("/api/jobs/nope"), 401)
    assert_error(await anon.post("/api/jobs/nope/requeue"), 401)
    assert_error(await anon.post("/api/jobs/nope/cancel"), 401)


async def test_unauthenticated_body_is_not_validated(anon: Client) -> None:
    """Auth runs before the body is read: an invalid or huge body still gets 401."""
    assert_error(await anon.post("/api/jobs/enqueue", content=b"not json"), 401)
    response = await anon.post(
        "/api/jobs/enqueue",
        content=b"x" * (3 * 1024 * 1024),
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 401)


async def test_bearer_scheme_is_case_insensitive(anon: Client) -> None:
    response = await anon.get("/api/jobs/stats", headers={"Authorization": f"bearer {TOKEN}"})
    assert response.status_code == 200


async def test_route_census(app: Litestar, anon: Client) -> None:
    """Every route not on the explicit public allow-list answers 401 without credentials."""
    public = set(public_paths(app))
    assert public <= {
        "/",
        "/_",
        "/_/",
        "/_/static/{name:str}",
        "/schema",
        "/api/health",
        *_schema_paths(app),
    }
    checked = 0
    for route in app.routes:
        if is_public(route.path):
            continue
        path = (
            route.path.replace("{job_id:str}", "some-id")
            .replace("{topic:str}", "some-topic")
            .replace("{name:str}", "some-schedule")
        )
        assert "{" not in path, f"census does not know how to fill {route.path}"
        for method in sorted(route.methods - {"OPTIONS", "HEAD"}):
            response = await anon.request(method, path)
            assert response.status_code == 401, (method, route.path, response.status_code)
            checked += 1
    assert checked >= 6


def _schema_paths(app: Litestar) -> set[str]:
    return {route.path for route in app.routes if route.path.startswith("/schema")}


async def test_public_allow_list_is_reachable_without_credentials(anon: Client) -> None:
    assert (await anon.get("/schema/openapi.json")).status_code == 200
    assert (await anon.get("/_/")).status_code == 200
    assert (await anon.get("/api/health")).status_code == 200


def test_token_comparison_is_constant_time() -> None:
    """The guard compares with hmac.compare_digest (patched here to observe the call)."""
    jobs = make_jobs()
    app = create_app(jobs, token=TOKEN, run_worker=False)
    from litestar.testing import TestClient

    with (
        mock.patch("jobs_http._auth.hmac.compare_digest", wraps=hmac.compare_digest) as spy,
        TestClient(app) as c,
    ):
        assert c.get("/api/jobs/stats", headers=AUTH).status_code == 200
        assert c.get("/api/jobs/stats", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert spy.call_count == 2
    assert spy.call_args_list[0].args == (TOKEN.encode(), TOKEN.encode())


@pytest.mark.parametrize("is_async", [False, True])
async def test_custom_authenticate(is_async: bool) -> None:
    """`authenticate=` replaces the token check; sync or async, True lets a request in."""
    seen: list[str] = []

    def check(token: str) -> bool:
        seen.append(token)
        return token == "let-me-in"

    async def acheck(token: str) -> bool:
        return check(token)

    app = create_app(make_jobs(), authenticate=acheck if is_async else check, run_worker=False)
    async with AsyncTestClient(app=app) as c:
        ok = await c.get("/api/jobs/stats", headers={"Authorization": "Bearer let-me-in"})
        assert ok.status_code == 200
        assert_error(await c.get("/api/jobs/stats", headers={"Authorization": "Bearer no"}), 401)
        assert_error(await c.get("/api/jobs/stats"), 401)
    assert seen == ["let-me-in", "no"]


async def test_authenticate_must_return_true_exactly() -> None:
    """A truthy non-bool (e.g. a user object by mistake) does not let a request in."""

    def sloppy(token: str) -> Any:
        return "yes"

    app = create_app(make_jobs(), authenticate=sloppy, run_worker=False)
    async with AsyncTestClient(app=app) as c:
        assert_error(await c.get("/api/jobs/stats", headers={"Authorization": "Bearer x"}), 401)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"token": TOKEN, "authenticate": lambda t: True}],
    ids=["neither", "both"],
)
def test_create_app_needs_exactly_one_auth(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="exactly one of token= or authenticate="):
        create_app(make_jobs(), **kwargs)


@pytest.mark.parametrize("token", ["", "   "])
def test_empty_token_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        create_app(make_jobs(), token=token)
