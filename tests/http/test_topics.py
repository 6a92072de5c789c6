"""`/api/topics`: counts per topic, pause and resume, the global limit; auth and bad input."""

from __future__ import annotations

import pytest

from jobs_core import Jobs

from .conftest import AUTH, Client, assert_error

TOPIC_KEYS = {"topic", "counts", "running", "paused", "max_running"}
ZERO = {"pending": 0, "processing": 0, "completed": 0, "failed": 0, "cancelled": 0}


async def test_topics_are_listed_with_counts_and_policies(client: Client, jobs: Jobs) -> None:
    await jobs.enqueue("mail", {})
    await jobs.enqueue("mail", {})
    await jobs.enqueue("sms", {})
    await jobs.set_limit("sms", max_running=3)
    response = await client.get("/api/topics")
    assert response.status_code == 200
    items = response.json()["items"]
    assert [item["topic"] for item in items] == ["mail", "sms"]
    assert all(set(item) == TOPIC_KEYS for item in items)
    assert items[0] == {
        "topic": "mail",
        "counts": ZERO | {"pending": 2},
        "running": 0,
        "paused": False,
        "max_running": None,
    }
    assert (items[1]["paused"], items[1]["max_running"]) == (False, 3)


async def test_pause_and_resume_are_stored(client: Client, jobs: Jobs) -> None:
    response = await client.post("/api/topics/mail/pause")
    assert response.status_code == 200
    assert response.json() == {
        "topic": "mail",
        "counts": ZERO,
        "running": 0,
        "paused": True,
        "max_running": None,
    }
    assert [(i.topic, i.paused) for i in await jobs.list_topics()] == [("mail", True)]
    again = await client.post("/api/topics/mail/pause")
    assert again.json()["paused"] is True
    resumed = await client.post("/api/topics/mail/resume")
    assert (resumed.status_code, resumed.json()["paused"]) == (200, False)
    assert await jobs.list_topics() == []


async def test_the_limit_is_set_and_lifted(client: Client, jobs: Jobs) -> None:
    response = await client.put("/api/topics/mail/limit", json={"max_running": 2})
    assert (response.status_code, response.json()["max_running"]) == (200, 2)
    zero = await client.put("/api/topics/mail/limit", json={"max_running": 0})
    assert zero.json()["max_running"] == 0
    lifted = await client.put("/api/topics/mail/limit", json={"max_running": None})
    assert (lifted.status_code, lifted.json()["max_running"]) == (200, None)
    assert await jobs.list_topics() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_running": -1}, "max_running"),
        ({"max_running": 1.5}, "max_running"),
        ({"max_running": True}, "max_running"),
        ({"max_running": "2"}, "max_running"),
        ({}, "max_running"),
        ({"max_running": 1, "extra": 1}, "extra"),
    ],
)
async def test_a_bad_limit_body_is_a_400_naming_the_field(
    client: Client, jobs: Jobs, body: dict[str, object], field: str
) -> None:
    response = await client.put("/api/topics/mail/limit", json=body)
    error = assert_error(response, 400)
    assert field in error["data"]
    assert await jobs.list_topics() == []


async def test_a_limit_body_must_be_json(client: Client) -> None:
    response = await client.put(
        "/api/topics/mail/limit", content=b"max_running=2", headers={"Content-Type": "text/plain"}
    )
    assert_error(response, 415)
    broken = await client.put(
        "/api/topics/mail/limit", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert_error(broken, 400)


async def test_a_bad_topic_is_a_400(client: Client) -> None:
    response = await client.post(f"/api/topics/{'x' * 300}/pause")
    error = assert_error(response, 400)
    assert "topic" in error["data"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/topics"),
        ("POST", "/api/topics/mail/pause"),
        ("POST", "/api/topics/mail/resume"),
        ("PUT", "/api/topics/mail/limit"),
    ],
)
async def test_topics_need_the_token(anon: Client, jobs: Jobs, method: str, path: str) -> None:
    response = await anon.request(method, path, json={"max_running": 1})
    assert_error(response, 401)
    assert await jobs.list_topics() == []
    allowed = await anon.request(method, path, json={"max_running": 1}, headers=AUTH)
    assert allowed.status_code == 200
