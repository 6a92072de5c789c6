"""The topics section of the admin page, in headless Chromium against a real `jobs serve`:
each topic's counts, pause and resume, and its global limit, each stored by the API."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.http.browser.conftest import Server, sign_in

pytestmark = pytest.mark.browser

TOPIC = "topics.ui"  # no handler: its job stays pending; no other test uses it


def stored(server: Server) -> dict[str, Any]:
    """The topic as `GET /api/topics` reports it."""
    items = server.api.get("/api/topics").json()["items"]
    (item,) = [item for item in items if item["topic"] == TOPIC]
    return dict(item)


def test_a_topic_is_paused_resumed_and_limited_from_the_page(page: Page, server: Server) -> None:
    server.pending_job(TOPIC)
    sign_in(page, server)
    row = page.locator(f'#topics-body tr[data-topic="{TOPIC}"]')
    expect(row).to_be_visible()
    cells = row.locator("td")
    expect(cells.nth(1)).to_have_text("active")
    expect(cells.nth(2)).to_have_text("1")  # pending
    expect(cells.nth(3)).to_have_text("0")  # processing
    header = page.locator("#topics-table thead th")
    expect(header.nth(2)).to_have_text("Pending")

    row.get_by_role("button", name="Pause").click()
    expect(page.locator("#notice")).to_have_text(f"Paused topic {TOPIC}.")
    expect(cells.nth(1)).to_have_text("paused")
    expect(row.get_by_role("button", name="Resume")).to_be_visible()
    assert stored(server)["paused"] is True

    limit = row.get_by_label(f"Limit for {TOPIC}")
    limit.fill("3")
    row.get_by_role("button", name="Set limit").click()
    expect(page.locator("#notice")).to_have_text(f"At most 3 of {TOPIC} run at once.")
    expect(limit).to_have_value("3")
    assert stored(server)["max_running"] == 3

    limit.fill("-2")
    row.get_by_role("button", name="Set limit").click()
    expect(page.locator("#notice")).to_contain_text("A limit is a whole number")
    assert stored(server)["max_running"] == 3

    row.get_by_role("button", name="Resume").click()
    expect(cells.nth(1)).to_have_text("active")
    limit.fill("")
    row.get_by_role("button", name="Set limit").click()
    expect(page.locator("#notice")).to_have_text(f"Removed the limit of {TOPIC}.")
    expect(limit).to_have_value("")
    assert (stored(server)["paused"], stored(server)["max_running"]) == (False, None)

    limit.fill("0")
    row.get_by_role("button", name="Set limit").click()
    expect(cells.nth(1)).to_have_text("held (limit 0)")
    limit.fill("")
    row.get_by_role("button", name="Set limit").click()
    expect(cells.nth(1)).to_have_text("active")


def test_the_topics_section_is_hidden_in_a_job_s_details(page: Page, server: Server) -> None:
    job = server.pending_job(TOPIC)
    sign_in(page, server, f"/_/?job={job['id']}")
    expect(page.locator("#topics-view")).to_be_hidden()
    page.locator("#back-link").click()
    expect(page.locator("#topics-view")).to_be_visible()
