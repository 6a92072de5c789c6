"""A job's unique key on the admin page, in headless Chromium against a real `jobs
serve`: a note under the topic in the list and a fact in the job's details (a dash for a
job without one); a duplicate enqueue adds no row."""

from __future__ import annotations

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.http.browser import jobs_app
from tests.http.browser.conftest import FAR_FUTURE, Server, sign_in

pytestmark = pytest.mark.browser


def row_of(page: Page, job_id: str) -> Locator:
    return page.locator(f'#jobs-body tr[data-job-id="{job_id}"]')


def test_the_list_and_the_details_show_the_unique_key(page: Page, server: Server) -> None:
    topic = jobs_app.STAYS_PENDING
    key = "report:<b>2030-01-01</b>"  # shown as text, never as markup
    keyed = server.enqueue(topic, {"k": 1}, run_at=FAR_FUTURE, unique_key=key)
    again = server.api.post(
        "/api/jobs/enqueue",
        json={"topic": topic, "payload": {"k": 2}, "run_at": FAR_FUTURE, "unique_key": key},
    )
    assert again.headers["Jobs-Duplicate"] == "true"
    assert again.json()["id"] == keyed["id"]
    plain = server.enqueue(topic, {"k": 3}, run_at=FAR_FUTURE)
    sign_in(page, server, f"/_/?topic={topic}")
    note = row_of(page, keyed["id"]).locator(".row-key")
    expect(note).to_have_text(f"key {key}")
    expect(note).to_have_attribute("title", f"Unique key: {key}")
    expect(row_of(page, plain["id"]).locator(".row-key")).to_have_count(0)
    expect(page.locator("#jobs-body b")).to_have_count(0)

    row_of(page, keyed["id"]).locator("a.job-link").click()
    expect(page.locator("#detail-body")).to_be_visible()
    expect(page.locator("#detail-unique_key")).to_have_text(key)
    facts = page.locator("#detail-body dl.facts")
    expect(facts.locator("dt", has_text="Unique key")).to_be_visible()

    page.goto(f"{server.url}/_/?job={plain['id']}")  # still signed in: this tab's token
    expect(page.locator("#detail-body")).to_be_visible()
    expect(page.locator("#detail-unique_key")).to_have_text("\N{EN DASH}")
