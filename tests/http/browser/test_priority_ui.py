"""A job's priority on the admin page, in headless Chromium against a real `jobs serve`:
its own column in the list (labelled on a phone, where rows become cards) and a fact in
the job's details."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.http.browser import jobs_app
from tests.http.browser.conftest import FAR_FUTURE, PHONE, Server, sign_in

pytestmark = pytest.mark.browser


def row_of(page: Page, job_id: str) -> Locator:
    return page.locator(f'#jobs-body tr[data-job-id="{job_id}"]')


def test_the_list_and_the_details_show_each_job_s_priority(page: Page, server: Server) -> None:
    """The column holds each job's own priority (the default 0, a high one, a negative
    one) under its header; the details say it too."""
    topic = jobs_app.STAYS_PENDING
    made = {
        priority: server.enqueue(topic, {"p": priority}, run_at=FAR_FUTURE, priority=priority)
        for priority in (0, 42, -7)
    }
    assert [job["priority"] for job in made.values()] == [0, 42, -7]
    sign_in(page, server, f"/_/?topic={topic}")
    header = page.locator("#jobs-table thead th")
    expect(header.nth(2)).to_have_text("Priority")
    for priority, job in made.items():
        cell = row_of(page, job["id"]).locator("td.priority")
        expect(cell).to_have_text(str(priority))
        expect(cell).to_have_attribute("data-label", "Priority")
        assert row_of(page, job["id"]).locator("td").nth(2).text_content() == str(priority)

    row_of(page, made[42]["id"]).locator("a.job-link").click()
    expect(page.locator("#detail-body")).to_be_visible()
    expect(page.locator("#detail-priority")).to_have_text("42")
    facts = page.locator("#detail-body dl.facts")
    expect(facts.locator("dt", has_text="Priority")).to_be_visible()

    page.goto(f"{server.url}/_/?job={made[-7]['id']}")  # still signed in: this tab's token
    expect(page.locator("#detail-body")).to_be_visible()
    expect(page.locator("#detail-priority")).to_have_text("-7")


def test_a_phone_labels_the_priority_of_each_card(
    open_page: Callable[..., Page], server: Server
) -> None:
    job = server.enqueue(jobs_app.STAYS_PENDING, None, run_at=FAR_FUTURE, priority=100)
    page = open_page(viewport=PHONE)
    sign_in(page, server, f"/_/?topic={jobs_app.STAYS_PENDING}")
    cell = row_of(page, job["id"]).locator("td.priority")
    expect(cell).to_be_visible()
    label = cell.evaluate("cell => getComputedStyle(cell, '::before').content")
    assert label == '"Priority "', label
    expect(cell).to_have_text("100")
