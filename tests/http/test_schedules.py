"""`/api/schedules`: list, get, create/update, delete, pause and resume; the fields the
schedules page shows (next fire time, last fired job); auth and bad input."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from jobs_core import Jobs, ScheduleFirer

from .conftest import Client, assert_error

SCHEDULE_KEYS = {
    "name",
    "topic",
    "payload",
    "cron",
    "every",
    "timezone",
    "misfire",
    "priority",
    "max_retries",
    "timing",
    "paused",
    "next_fire_at",
    "last_fired_at",
    "last_job_id",
    "created",
    "updated",
}


def _time(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


async def test_put_creates_and_updates_a_schedule(client: Client, jobs: Jobs) -> None:
    body = {"topic": "report", "cron": "0 3 * * *", "timezone": "Europe/Paris", "payload": [1]}
    response = await client.put("/api/schedules/nightly", json=body)
    assert response.status_code == 200
    created = response.json()
    assert set(created) == SCHEDULE_KEYS
    assert (created["cron"], created["every"], created["misfire"]) == ("0 3 * * *", None, "latest")
    stored = await jobs.get_schedule("nightly")
    assert _time(created["next_fire_at"]) == stored.next_fire_at
    assert (created["last_fired_at"], created["last_job_id"]) == (None, None)
    again = await client.put(
        "/api/schedules/nightly", json={**body, "priority": 4, "misfire": "skip"}
    )
    assert (again.json()["priority"], again.json()["misfire"]) == (4, "skip")
    assert again.json()["next_fire_at"] == created["next_fire_at"]
    every = await client.put("/api/schedules/tick", json={"topic": "t", "every": 1.5})
    assert (every.json()["every"], every.json()["timing"]) == (1.5, "every 1.5s")
    listed = await client.get("/api/schedules")
    assert [item["name"] for item in listed.json()["items"]] == ["nightly", "tick"]


async def test_the_last_fired_job_is_shown(client: Client, jobs: Jobs) -> None:
    await client.put("/api/schedules/tick", json={"topic": "t", "every": 1})
    schedule = await jobs.get_schedule("tick")
    (firer,) = [s for s in jobs.services if isinstance(s, ScheduleFirer)]
    await firer.run_once(schedule.next_fire_at)  # as a maintenance tick at that slot
    shown = (await client.get("/api/schedules/tick")).json()
    (job,) = (await jobs.list(topic="t")).items
    assert shown["last_job_id"] == job.id
    assert _time(shown["last_fired_at"]) == job.run_at == schedule.next_fire_at


async def test_pause_resume_and_delete(client: Client, jobs: Jobs) -> None:
    await client.put("/api/schedules/tick", json={"topic": "t", "every": 60})
    paused = await client.post("/api/schedules/tick/pause")
    assert (paused.status_code, paused.json()["paused"]) == (200, True)
    resumed = await client.post("/api/schedules/tick/resume")
    assert (resumed.status_code, resumed.json()["paused"]) == (200, False)
    deleted = await client.delete("/api/schedules/tick")
    assert deleted.status_code == 204
    assert await jobs.schedules() == []
    for method, path in [
        ("GET", "/api/schedules/tick"),
        ("DELETE", "/api/schedules/tick"),
        ("POST", "/api/schedules/tick/pause"),
        ("POST", "/api/schedules/tick/resume"),
    ]:
        assert_error(await client.request(method, path), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"topic": "t", "every": 0}, "every"),
        ({"topic": "t", "every": True}, "every"),
        ({"topic": "t", "every": "1"}, "every"),
        ({"topic": "t", "every": 1, "extra": 1}, "extra"),
        ({"every": 1}, "topic"),
    ],
)
async def test_a_bad_body_is_a_400_naming_the_field(
    client: Client, jobs: Jobs, body: dict[str, object], field: str
) -> None:
    error = assert_error(await client.put("/api/schedules/tick", json=body), 400)
    assert field in error["data"]
    assert await jobs.schedules() == []


@pytest.mark.parametrize(
    "body",
    [
        {"topic": "t"},
        {"topic": "t", "every": 1, "cron": "* * * * *"},
        {"topic": "t", "cron": "not cron"},
        {"topic": "t", "every": 1, "timezone": "Mars/Olympus"},
        {"topic": "t", "every": 1, "misfire": "sometimes"},
        {"topic": "bad topic", "every": 1},
        {"topic": "t", "every": 1, "priority": 101},
    ],
)
async def test_an_invalid_definition_is_a_400(
    client: Client, jobs: Jobs, body: dict[str, object]
) -> None:
    assert_error(await client.put("/api/schedules/tick", json=body), 400)
    assert_error(await client.put(f"/api/schedules/{'x' * 300}", json={"topic": "t"}), 400)
    assert await jobs.schedules() == []


async def test_a_body_must_be_json(client: Client) -> None:
    response = await client.put(
        "/api/schedules/tick", content=b"topic=t", headers={"Content-Type": "text/plain"}
    )
    assert_error(response, 415)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/schedules"),
        ("GET", "/api/schedules/tick"),
        ("PUT", "/api/schedules/tick"),
        ("POST", "/api/schedules/tick/pause"),
        ("POST", "/api/schedules/tick/resume"),
        ("DELETE", "/api/schedules/tick"),
    ],
)
async def test_schedules_need_the_token(anon: Client, jobs: Jobs, method: str, path: str) -> None:
    await jobs.schedule("tick", topic="t", every=timedelta(seconds=60))
    response = await anon.request(method, path, json={"topic": "t", "every": 60})
    assert_error(response, 401)
    assert [s.paused for s in await jobs.schedules()] == [False]
