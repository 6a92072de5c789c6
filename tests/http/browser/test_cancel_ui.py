"""Cancelling from the admin page, in headless Chromium against a real `jobs serve`.

The page offers Cancel exactly when a job's `actions` lists it (pending and processing
jobs), asks first, and shows the outcome: a pending job is cancelled at once; a running
one shows its cancel request until its worker stops it.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.http.browser import jobs_app
from tests.http.browser.conftest import Server, sign_in

pytestmark = pytest.mark.browser


def row_of(page: Page, job_id: str) -> Locator:
    return page.locator(f'#jobs-body tr[data-job-id="{job_id}"]')


def test_cancel_a_pending_job_from_the_list(page: Page, server: Server) -> None:
    """Cancel asks first (keeping the job changes nothing), then the row is cancelled in
    place and the count follows."""
    job = server.pending_job(payload={"report": "to cancel"})
    sign_in(page, server, f"/_/?topic={jobs_app.STAYS_PENDING}")
    row = row_of(page, job["id"])
    dialog = page.locator("#confirm-dialog")
    expect(row.locator("td.actions button")).to_have_text(["Cancel", "Delete"])

    row.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_visible()
    expect(page.locator("#confirm-title")).to_have_text("Cancel this job?")
    expect(page.locator("#confirm-text")).to_contain_text("will not run")
    expect(page.locator("#confirm-ok")).to_have_text("Cancel job")
    expect(page.locator("#confirm-cancel")).to_have_text("Keep job")
    page.locator("#confirm-cancel").click()
    expect(dialog).to_be_hidden()
    assert server.job(job["id"]).json()["status"] == "pending"

    cancelled_before = server.stats()["cancelled"]
    page.evaluate("window.__notReloaded = true")
    row.get_by_role("button", name="Cancel").click()
    with page.expect_response(re.compile("/api/jobs/stats")):  # the counts follow at once
        page.locator("#confirm-ok").click()
    expect(dialog).to_be_hidden()
    expect(row.locator(".badge")).to_have_text("cancelled")
    expect(row.locator("td.actions button")).to_have_text(["Requeue", "Delete"])
    expect(page.locator("#notice")).to_contain_text("Cancelled")
    expect(page.locator("#stat-cancelled")).to_have_text(str(cancelled_before + 1))
    assert page.evaluate("window.__notReloaded") is True
    assert server.job(job["id"]).json()["status"] == "cancelled"

    # Another dialog afterwards names its buttons as before.
    row.get_by_role("button", name="Delete").click()
    expect(page.locator("#confirm-cancel")).to_have_text("Cancel")
    page.locator("#confirm-cancel").click()


def test_cancel_a_pending_job_from_the_details(page: Page, server: Server) -> None:
    job = server.pending_job()
    sign_in(page, server, f"/_/?job={job['id']}")
    expect(page.locator("#detail-cancel")).to_be_visible()
    page.locator("#detail-cancel").click()
    page.locator("#confirm-ok").click()
    expect(page.locator("#detail-status")).to_have_text("cancelled")
    expect(page.locator("#detail-cancel")).to_be_hidden()
    expect(page.locator("#detail-requeue")).to_be_visible()
    expect(page.locator("#detail-cancel_requested")).to_be_hidden()  # it never ran
    assert server.job(job["id"]).json()["status"] == "cancelled"


def test_a_completed_job_offers_no_cancel(page: Page, server: Server) -> None:
    job = server.enqueue(jobs_app.SUCCEEDS)
    server.wait_for(job["id"], "completed")
    sign_in(page, server, f"/_/?topic={jobs_app.SUCCEEDS}")
    expect(row_of(page, job["id"]).locator("td.actions button")).to_have_count(0)
    page.goto(f"{server.url}/_/?job={job['id']}")
    expect(page.locator("#detail-body")).to_be_visible()
    expect(page.locator("#detail-cancel")).to_be_hidden()
    detail_buttons = page.locator("#detail-body").get_by_role("button", name="Cancel", exact=True)
    expect(detail_buttons).to_have_count(0)


def test_a_running_job_cancelled_from_the_details(page: Page, server: Server) -> None:
    """Cancelling a processing job asks its worker: the details show it still processing,
    with the time of the request; once its worker has stopped it, it shows cancelled."""
    job = server.enqueue(jobs_app.RUNS_LONG, {"video_id": 1})
    server.wait_for(job["id"], "processing")
    sign_in(page, server, f"/_/?job={job['id']}")
    expect(page.locator("#detail-status")).to_have_text("processing")
    expect(page.locator("#detail-cancel_requested")).to_be_hidden()
    page.locator("#detail-cancel").click()
    expect(page.locator("#confirm-text")).to_contain_text("next lease renewal")
    page.locator("#confirm-ok").click()
    expect(page.locator("#notice")).to_contain_text("Asked to cancel")
    expect(page.locator("#detail-status")).to_have_text("processing")  # the answer's state
    expect(page.locator("#detail-cancel_requested")).to_be_visible()
    asked = server.job(job["id"]).json()["cancel_requested"]
    assert asked is not None
    expect(page.locator("#detail-cancel_requested")).to_contain_text(asked)

    # The worker learns of the request at its next lease renewal (a third of the 30 s
    # lease) and stops the handler.
    stopped = server.wait_for(job["id"], "cancelled", timeout=30)
    assert stopped["cancel_requested"] == asked
    page.reload()
    expect(page.locator("#detail-status")).to_have_text("cancelled")
    expect(page.locator("#detail-cancel_requested")).to_contain_text(asked)
    expect(page.locator("#detail-cancel")).to_be_hidden()
    expect(page.locator("#detail-requeue")).to_be_visible()


def test_a_running_job_cancelled_from_the_list(page: Page, server: Server) -> None:
    """The row, shown from the cancel's answer, says a cancel was requested."""
    job = server.enqueue(jobs_app.RUNS_LONG, {"video_id": 2})
    server.wait_for(job["id"], "processing")
    sign_in(page, server, f"/_/?topic={jobs_app.RUNS_LONG}&status=processing")
    row = row_of(page, job["id"])
    expect(row.locator("td.actions button")).to_have_text(["Cancel"])
    expect(row.locator(".row-note")).to_have_count(0)
    row.get_by_role("button", name="Cancel").click()
    page.locator("#confirm-ok").click()
    expect(row.locator(".row-note")).to_have_text("cancel requested")
    expect(row.locator(".badge")).to_have_text("processing")
    expect(page.locator("#notice")).to_contain_text("next lease renewal")
    assert server.job(job["id"]).json()["cancel_requested"] is not None


def test_the_status_filter_and_counts_offer_cancelled(page: Page, server: Server) -> None:
    job = server.api.post(f"/api/jobs/{server.pending_job()['id']}/cancel").json()
    sign_in(page, server)
    page.locator("#filter-status").select_option("cancelled")
    expect(page).to_have_url(re.compile(r"\?status=cancelled$"))
    expect(page.locator("#jobs-table")).not_to_have_attribute("aria-busy", "true")
    expect(row_of(page, job["id"])).to_have_count(1)
    for row in page.locator("#jobs-body tr").all():
        expect(row.locator(".badge")).to_have_text("cancelled")
    expect(page.locator("#stat-cancelled")).to_have_text(str(server.stats()["cancelled"]))
    page.locator(".stat[data-status=cancelled]").click()  # pressed again: no filter
    expect(page).to_have_url(re.compile(r"/_/$"))
    page.locator(".stat[data-status=cancelled]").click()
    expect(page).to_have_url(re.compile(r"\?status=cancelled$"))
