"""Bulk actions from the admin page, in headless Chromium against a real `jobs serve`:
the bar shows only on a filtered list, the confirmation gives the server's own count,
and the action is stored by the API."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.http.browser.conftest import Server, sign_in

pytestmark = pytest.mark.browser

TOPIC = "bulk.ui"  # no handler: its jobs stay pending; no other test uses it


def test_cancel_every_job_of_a_topic_after_a_confirmation_with_the_count(
    page: Page, server: Server
) -> None:
    jobs = [server.pending_job(TOPIC) for _ in range(3)]
    sign_in(page, server)
    expect(page.locator("#bulk-bar")).to_be_hidden()  # no filter: no bulk action

    page.locator("#filter-topic").fill(TOPIC)
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#bulk-bar")).to_be_visible()
    page.get_by_role("button", name="Cancel all").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#confirm-title")).to_have_text("Cancel 3 jobs?")
    page.get_by_role("button", name="Keep them").click()
    expect(dialog).to_be_hidden()
    assert {server.job(job["id"]).json()["status"] for job in jobs} == {"pending"}

    page.get_by_role("button", name="Cancel all").click()
    page.get_by_role("button", name="Cancel 3 jobs").click()
    expect(page.locator("#notice")).to_have_text("Cancelled 3 of 3.")
    assert {server.job(job["id"]).json()["status"] for job in jobs} == {"cancelled"}

    page.get_by_role("button", name="Requeue all").click()
    page.get_by_role("button", name="Requeue 3 jobs").click()
    expect(page.locator("#notice")).to_have_text("Requeued 3 of 3.")
    assert {server.job(job["id"]).json()["status"] for job in jobs} == {"pending"}

    page.get_by_role("button", name="Delete all").click()
    page.get_by_role("button", name="Delete 3 jobs").click()
    expect(page.locator("#notice")).to_have_text("Deleted 3 of 3.")
    assert {server.job(job["id"]).status_code for job in jobs} == {404}
    expect(page.locator("#bulk-bar")).to_be_hidden()  # nothing matches any more
