"""The schedules section of the admin page, in headless Chromium against a real `jobs
serve`: each stored schedule's timing, next fire time and last fired job (a link to it),
and pause/resume stored through the API."""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.http.browser.conftest import Server, sign_in

pytestmark = pytest.mark.browser

NAME = "ui.heartbeat"
TOPIC = "schedules.ui"  # no handler: its slot jobs stay pending; no other test uses it


def stored(server: Server) -> dict[str, Any]:
    response = server.api.get(f"/api/schedules/{NAME}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_schedule_shows_its_next_and_last_firing_and_is_paused_and_resumed(
    page: Page, server: Server
) -> None:
    made = server.api.put(f"/api/schedules/{NAME}", json={"topic": TOPIC, "every": 1})
    assert made.status_code == 200, made.text
    try:
        deadline = time.monotonic() + 20
        while stored(server)["last_job_id"] is None:  # the server's firer, every poll
            assert time.monotonic() < deadline, "the schedule never fired"
            time.sleep(0.1)
        assert server.api.post(f"/api/schedules/{NAME}/pause").status_code == 200
        schedule = stored(server)

        sign_in(page, server)
        row = page.locator(f'#schedules-body tr[data-schedule="{NAME}"]')
        expect(row).to_be_visible()
        cells = row.locator("td")
        expect(cells.nth(1)).to_have_text(TOPIC)
        expect(cells.nth(2)).to_have_text(schedule["timing"])
        expect(cells.nth(3)).to_have_text("paused")
        next_fire = schedule["next_fire_at"][:19].replace("T", " ")
        expect(cells.nth(4)).to_have_text(next_fire)
        last = schedule["last_job_id"]
        expect(cells.nth(6)).to_have_text(f"…{last[-8:]}")

        row.get_by_role("button", name="Resume").click()
        expect(page.locator("#notice")).to_have_text(f"Resumed schedule {NAME}.")
        expect(cells.nth(3)).to_have_text("active")
        assert stored(server)["paused"] is False
        row.get_by_role("button", name="Pause").click()
        expect(page.locator("#notice")).to_have_text(f"Paused schedule {NAME}.")
        expect(cells.nth(3)).to_have_text("paused")
        assert stored(server)["paused"] is True

        cells.nth(6).get_by_role("link").click()  # the last fired job's details
        expect(page.locator("#detail-view")).to_be_visible()
        expect(page.locator("#schedules-view")).to_be_hidden()
        assert f"job={last}" in page.url
    finally:
        server.api.delete(f"/api/schedules/{NAME}")
        server.api.post("/api/jobs/bulk/delete", json={"topic": TOPIC})
