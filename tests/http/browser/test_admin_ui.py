"""The admin page in headless Chromium against a real `jobs serve`: what an on-call person does."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Locator, Page, Route, expect

from tests.http.browser import jobs_app
from tests.http.browser.conftest import PAGING_JOBS, PAGING_TOPIC, PHONE, TOKEN, Server, sign_in

pytestmark = pytest.mark.browser

TOKEN_KEY = "jobs.superuser-token"
DASH = "\N{EN DASH}"  # the page writes ranges as "1\N{EN DASH}20 of 23"


def rows(page: Page) -> Locator:
    return page.locator("#jobs-body tr")


def list_loaded(page: Page) -> None:
    """Wait until the list request the last navigation started has been rendered."""
    expect(page.locator("#jobs-table")).not_to_have_attribute("aria-busy", "true")


def row_of(page: Page, job_id: str) -> Locator:
    return page.locator(f'#jobs-body tr[data-job-id="{job_id}"]')


def test_a_wrong_token_is_refused_and_not_kept(page: Page, server: Server) -> None:
    """A wrong token says so, shows no data and is not stored."""
    page.goto(server.url + "/_/")
    page.locator("#token").fill("not-the-token")
    page.locator("#signin-submit").click()
    expect(page.locator("#signin-error")).to_have_text(re.compile("token was not accepted"))
    expect(page.locator("#app-view")).to_be_hidden()
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") is None


def test_an_empty_token_is_not_sent(page: Page, server: Server) -> None:
    """Submitting nothing asks for the token instead of calling the API."""
    api_calls: list[str] = []
    page.on("request", lambda r: api_calls.append(r.url) if "/api/" in r.url else None)
    page.goto(server.url + "/_/")
    page.locator("#signin-submit").click()
    expect(page.locator("#signin-error")).to_have_text("Enter the superuser token.")
    assert api_calls == []


def test_sign_in_shows_the_newest_jobs_and_the_counts(page: Page, server: Server) -> None:
    """After signing in: counts equal the API's, rows are newest first with their columns."""
    sign_in(page, server)
    stats = server.stats()
    for status in ("pending", "processing", "completed", "failed", "cancelled"):
        expect(page.locator(f"#stat-{status}")).to_have_text(str(stats[status]))
    expect(page.locator("#stat-rate")).to_have_text(f"{stats['success_rate'] * 100:.1f} %")

    newest = server.api.get("/api/jobs", params={"limit": 20}).json()
    expect(rows(page)).to_have_count(len(newest["items"]))
    ids = [row.get_attribute("data-job-id") for row in rows(page).all()]
    assert ids == [job["id"] for job in newest["items"]]
    first = newest["items"][0]
    cells = rows(page).first.locator("td")
    expect(cells.nth(0).locator("a")).to_have_text(first["topic"])
    expect(cells.nth(1)).to_have_text(first["status"])
    expect(cells.nth(2)).to_have_text(str(first["priority"]))
    expect(cells.nth(3)).to_have_text(f"{first['retries']}/{first['max_retries']}")
    expect(cells.nth(4).locator("time")).to_have_attribute("datetime", first["run_at"])
    expect(cells.nth(5).locator("time")).to_have_attribute("datetime", first["updated"])
    expect(page.locator("#page-info")).to_have_text(f"1{DASH}20 of {newest['total']}")

    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") == TOKEN
    assert page.context.cookies() == []
    page.reload()  # the token lives as long as the tab
    expect(rows(page)).to_have_count(20)
    page.locator("#sign-out").click()
    expect(page.locator("#signin-view")).to_be_visible()
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") is None


def test_the_list_asks_for_no_payloads(page: Page, server: Server) -> None:
    """The table shows no payloads, so its requests leave them out (`payloads=false`)."""
    list_url = re.compile(r"/api/jobs(\?|$)")
    lists: list[str] = []
    page.on("request", lambda r: lists.append(r.url) if list_url.search(r.url) else None)
    sign_in(page, server)
    expect(rows(page)).to_have_count(20)
    assert lists
    assert all("payloads=false" in url for url in lists), lists


def counts_refreshed_by(page: Page, action: Callable[[], None]) -> None:
    """Run `action`, which makes the page fetch the counts; return once it has shown them.

    The response event fires when the head arrives, but the page schedules its next
    refresh only after reading the body: moving the fake clock on before then would
    schedule it from the later time. The note's "updated <time>" changing marks that.
    """
    note = page.locator("#stats-note")
    shown = note.inner_text()
    with page.expect_response(re.compile("/api/jobs/stats")):
        action()
    expect(note).not_to_have_text(shown)


def test_counts_refresh_live_and_never_faster_than_once_a_second(
    page: Page, server: Server
) -> None:
    """Stats are fetched every 5 s of page time, and no event makes it poll faster than 1/s."""
    stats_url = re.compile("/api/jobs/stats")
    start = datetime(2030, 1, 1, tzinfo=UTC)
    page.clock.install(time=start)
    sign_in(page, server)
    pending = page.locator("#stat-pending")
    before = int(pending.inner_text())
    server.pending_job()
    with page.expect_response(stats_url):  # jump: the first 5 s refresh fires, then time stops
        page.clock.pause_at(start + timedelta(seconds=60))
    expect(pending).to_have_text(str(before + 1))  # shown, so the next one is due at +65 s

    stats_requests: list[str] = []
    page.on("request", lambda r: stats_requests.append(r.url) if stats_url.search(r.url) else None)
    page.clock.run_for(4_900)
    assert stats_requests == []
    counts_refreshed_by(page, lambda: page.clock.run_for(200))

    for _ in range(20):  # a burst of "tab became visible" events within the same second
        page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    page.clock.run_for(900)
    assert len(stats_requests) == 1, stats_requests
    counts_refreshed_by(page, lambda: page.clock.run_for(5_000))
    assert len(stats_requests) == 2


def test_filter_by_topic_and_status_with_a_shareable_url(
    open_page: Callable[..., Page], server: Server
) -> None:
    """Filters narrow the list, are kept in the URL, and that URL opens the same view."""
    page = open_page()
    sign_in(page, server)
    page.locator("#filter-topic").fill(jobs_app.FAILS)
    page.locator("#filters button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/_/\?topic=image\.resize$"))
    list_loaded(page)
    expect(rows(page).first).to_be_visible()
    for row in rows(page).all():
        expect(row.locator("a.job-link")).to_have_text(jobs_app.FAILS)

    page.locator("#filter-status").select_option("failed")
    expect(page).to_have_url(re.compile(r"\?topic=image\.resize&status=failed$"))
    list_loaded(page)
    total = server.api.get(
        "/api/jobs", params={"topic": jobs_app.FAILS, "status": "failed"}
    ).json()["total"]
    expect(page.locator("#page-info")).to_have_text(f"1{DASH}{min(total, 20)} of {total}")
    for row in rows(page).all():
        expect(row.locator(".badge")).to_have_text("failed")

    shared = page.url
    other = open_page()  # someone else opens the link and signs in
    sign_in(other, server, shared.removeprefix(server.url))
    expect(other.locator("#filter-topic")).to_have_value(jobs_app.FAILS)
    expect(other.locator("#filter-status")).to_have_value("failed")
    expect(rows(other)).to_have_count(min(total, 20))

    other.locator(".stat[data-status=completed]").click()  # the counts are filters too
    expect(other).to_have_url(re.compile(r"\?topic=image\.resize&status=completed$"))
    expect(other.locator("#list-state")).to_have_text("No jobs match these filters.")
    other.locator("#clear-filters").click()
    expect(other).to_have_url(re.compile(r"/_/$"))
    expect(rows(other)).to_have_count(20)


def test_paging_walks_the_list_and_keeps_the_offset_in_the_url(page: Page, server: Server) -> None:
    """Older/Newer move by 20 rows; the offset is in the URL."""
    sign_in(page, server, f"/_/?topic={PAGING_TOPIC}")
    expect(page.locator("#page-info")).to_have_text(f"1{DASH}20 of {PAGING_JOBS}")
    expect(page.locator("#prev-page")).to_be_disabled()
    first_page = [row.get_attribute("data-job-id") for row in rows(page).all()]
    page.locator("#next-page").click()
    expect(page).to_have_url(re.compile(r"offset=20"))
    expect(page.locator("#page-info")).to_have_text(f"21{DASH}{PAGING_JOBS} of {PAGING_JOBS}")
    expect(rows(page)).to_have_count(PAGING_JOBS - 20)
    expect(page.locator("#next-page")).to_be_disabled()
    second_page = [row.get_attribute("data-job-id") for row in rows(page).all()]
    assert not set(first_page) & set(second_page)
    # The oldest job is last: newest first across pages.
    oldest = server.api.get("/api/jobs", params={"topic": PAGING_TOPIC, "limit": 500}).json()
    assert second_page[-1] == oldest["items"][-1]["id"]
    page.locator("#prev-page").click()
    expect(page.locator("#page-info")).to_have_text(f"1{DASH}20 of {PAGING_JOBS}")


def test_empty_and_error_states(page: Page, server: Server) -> None:
    """No match says so; a filter the API refuses shows its message and a retry button."""
    sign_in(page, server, "/_/?topic=no.such.topic")
    expect(page.locator("#list-state")).to_have_text("No jobs match these filters.")
    expect(rows(page)).to_have_count(0)
    page.locator("#filter-topic").fill("not a topic!")
    page.locator("#filters button[type=submit]").click()
    expect(page.locator("#list-state")).to_contain_text("Could not load jobs: ")
    expect(page.locator("#list-state")).to_contain_text("topic")
    expect(page.locator("#list-state button")).to_have_text("Retry")


def test_details_show_payload_error_and_every_time(page: Page, server: Server) -> None:
    """A failed job's details: pretty payload, the full error, all timestamps, both actions."""
    long_error = "Traceback line\n" * 40 + "ValueError: the last line of a long error"
    job = server.failed_job(
        long_error,
        {
            "image_id": 42,
            "sizes": [64, 128],
            "meta": {"owner": "ana"},
            "order": 12345678901234567891,
        },
    )
    sign_in(page, server, f"/_/?topic={jobs_app.FAILS}")
    row_of(page, job["id"]).locator("a.job-link").click()
    expect(page).to_have_url(re.compile(rf"\?topic=image\.resize&job={job['id']}$"))

    expect(page.locator("#detail-title")).to_have_text(jobs_app.FAILS)
    expect(page.locator("#detail-status")).to_have_text("failed")
    expect(page.locator("#detail-id")).to_have_text(job["id"])
    expect(page.locator("#detail-retries")).to_have_text("0 of 0")
    for name in ("run_at", "created", "updated"):
        expect(page.locator(f"#detail-{name}")).to_contain_text(job[name])
    expect(page.locator("#detail-locked_until")).to_have_text(DASH)
    expect(page.locator("#detail-error")).to_have_text(job["last_error"])
    assert job["last_error"].endswith("ValueError: the last line of a long error")
    # Exactly as stored: keys in order, and integers past 2^53 not rounded.
    expect(page.locator("#detail-payload")).to_have_text(json.dumps(job["payload"], indent=2))
    expect(page.locator("#detail-payload")).to_contain_text('"order": 12345678901234567891')
    expect(page.locator("#detail-requeue")).to_be_visible()
    expect(page.locator("#detail-delete")).to_be_visible()

    page.go_back()  # the browser's back button returns to the filtered list
    expect(page.locator("#list-view")).to_be_visible()
    expect(page.locator("#filter-topic")).to_have_value(jobs_app.FAILS)


def test_buttons_only_where_the_state_machine_allows(page: Page, server: Server) -> None:
    """failed and cancelled: requeue + delete; pending: cancel + delete; completed: nothing.
    In rows and details."""
    completed = server.api.get("/api/jobs", params={"status": "completed", "limit": 1}).json()[
        "items"
    ][0]
    pending = server.pending_job()
    failed = server.failed_job("nope")
    cancelled = server.api.post(f"/api/jobs/{server.pending_job()['id']}/cancel").json()
    sign_in(page, server)
    expected = {
        cancelled["id"]: ["Requeue", "Delete"],
        failed["id"]: ["Requeue", "Delete"],
        pending["id"]: ["Cancel", "Delete"],
        completed["id"]: [],
    }
    for job in (completed, pending, failed, cancelled):  # the server lists the same actions
        assert [action.capitalize() for action in job["actions"]] == expected[job["id"]]
    for job_id, buttons in expected.items():
        page.goto(f"{server.url}/_/?job={job_id}")
        expect(page.locator("#detail-body")).to_be_visible()
        expect(page.locator("#detail-requeue")).to_be_visible(visible="Requeue" in buttons)
        expect(page.locator("#detail-cancel")).to_be_visible(visible="Cancel" in buttons)
        expect(page.locator("#detail-delete")).to_be_visible(visible="Delete" in buttons)
    page.goto(f"{server.url}/_/")
    for job_id, buttons in list(expected.items())[:3]:
        expect(row_of(page, job_id).locator("td.actions button")).to_have_text(buttons)


def test_buttons_follow_the_actions_the_server_lists(page: Page, server: Server) -> None:
    """The page offers a button exactly when the job's `actions` lists it, not by status.

    The API's answers are rewritten on their way to the page, so each job lists actions
    its status would not give it: the buttons must follow the list.
    """
    completed = server.enqueue(jobs_app.SUCCEEDS)
    server.wait_for(completed["id"], "completed")
    failed = server.failed_job("listed as delete only")
    pending = server.pending_job()
    listed = {
        completed["id"]: ["requeue", "cancel"],
        failed["id"]: [],
        pending["id"]: ["delete", "requeue"],
    }

    def rewrite(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        for job in body.get("items", [body]) if isinstance(body, dict) else []:
            if isinstance(job, dict) and job.get("id") in listed:
                job["actions"] = listed[job["id"]]
        route.fulfill(response=response, json=body)

    page.route(re.compile(r"/api/jobs(\?|/[0-9a-f-]+$)"), rewrite)
    sign_in(page, server)
    buttons = {"requeue": "Requeue", "cancel": "Cancel", "delete": "Delete"}
    for job_id, actions in listed.items():
        shown = [buttons[action] for action in buttons if action in actions]
        expect(row_of(page, job_id).locator("td.actions button")).to_have_text(shown)
    for job_id, actions in listed.items():
        page.goto(f"{server.url}/_/?job={job_id}")
        expect(page.locator("#detail-body")).to_be_visible()
        expect(page.locator("#detail-requeue")).to_be_visible(visible="requeue" in actions)
        expect(page.locator("#detail-cancel")).to_be_visible(visible="cancel" in actions)
        expect(page.locator("#detail-delete")).to_be_visible(visible="delete" in actions)


def test_requeue_a_failed_job_after_confirming(page: Page, server: Server) -> None:
    """Cancel changes nothing; confirming turns the row pending without a reload."""
    job = server.failed_job("smtp timeout")
    sign_in(page, server, "/_/?status=failed")
    row = row_of(page, job["id"])
    dialog = page.locator("#confirm-dialog")

    row.get_by_role("button", name="Requeue").click()
    expect(dialog).to_be_visible()
    expect(page.locator("#confirm-title")).to_have_text("Requeue this job?")
    page.locator("#confirm-cancel").click()
    expect(dialog).to_be_hidden()
    assert server.job(job["id"]).json()["status"] == "failed"

    page.evaluate("window.__notReloaded = true")
    row.get_by_role("button", name="Requeue").click()
    with page.expect_response(re.compile("/api/jobs/stats")):  # the counts follow at once
        page.locator("#confirm-ok").click()
    expect(dialog).to_be_hidden()
    expect(row.locator(".badge")).to_have_text("pending")
    expect(row.locator("td.actions button")).to_have_text(["Cancel", "Delete"])
    expect(row.locator("td").nth(3)).to_have_text("0/0")
    expect(page.locator("#notice")).to_contain_text("Requeued")
    assert page.evaluate("window.__notReloaded") is True
    # The server's worker runs it again (the handler always fails) and fails it again.
    server.wait_for(job["id"], "failed")


def test_requeue_from_the_details(page: Page, server: Server) -> None:
    """The details view's Requeue shows the job pending, its error kept for reference."""
    job = server.failed_job("disk full")
    sign_in(page, server, f"/_/?job={job['id']}")
    page.locator("#detail-requeue").click()
    page.locator("#confirm-ok").click()
    expect(page.locator("#detail-status")).to_have_text("pending")
    expect(page.locator("#detail-requeue")).to_be_hidden()
    expect(page.locator("#notice")).to_contain_text("pending now")


def test_delete_a_pending_job_from_the_list(page: Page, server: Server) -> None:
    """Delete asks first, then the row goes and the job is gone from the server."""
    job = server.pending_job(payload={"report": "to delete"})
    sign_in(page, server, f"/_/?topic={jobs_app.STAYS_PENDING}")
    row = row_of(page, job["id"])
    row.get_by_role("button", name="Delete").click()
    expect(page.locator("#confirm-text")).to_contain_text("cannot be undone")
    expect(page.locator("#confirm-ok")).to_have_text("Delete")
    page.keyboard.press("Escape")  # Escape cancels as well
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    assert server.job(job["id"]).status_code == 200

    row.get_by_role("button", name="Delete").click()
    page.locator("#confirm-ok").click()
    expect(row).to_have_count(0)
    expect(page.locator("#notice")).to_contain_text("Deleted")
    assert server.job(job["id"]).status_code == 404


def test_delete_a_failed_job_from_the_details(page: Page, server: Server) -> None:
    """Deleting from the details returns to the list; the job's own URL then says it is gone."""
    job = server.failed_job("gone soon")
    sign_in(page, server, f"/_/?job={job['id']}")
    page.locator("#detail-delete").click()
    page.locator("#confirm-ok").click()
    expect(page.locator("#list-view")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/_/$"))
    assert server.job(job["id"]).status_code == 404
    page.goto(f"{server.url}/_/?job={job['id']}")
    expect(page.locator("#detail-state")).to_have_text(re.compile("no job with this id"))


def test_a_stale_row_is_reported_and_the_view_corrected(page: Page, server: Server) -> None:
    """If the job changed meanwhile (409), the message says so and the row shows the truth."""
    job = server.failed_job("raced")
    sign_in(page, server, f"/_/?topic={jobs_app.FAILS}")
    server.api.delete(f"/api/jobs/{job['id']}")  # someone else was faster
    row_of(page, job["id"]).get_by_role("button", name="Requeue").click()
    page.locator("#confirm-ok").click()
    expect(page.locator("#notice")).to_contain_text("Could not requeue")
    expect(row_of(page, job["id"])).to_have_count(0)


def test_a_token_rejected_later_signs_out(page: Page, server: Server) -> None:
    """When the server stops accepting the stored token, the page asks to sign in again."""
    sign_in(page, server)
    page.evaluate(f"sessionStorage.setItem('{TOKEN_KEY}', 'revoked')")
    page.reload()
    expect(page.locator("#signin-view")).to_be_visible()
    expect(page.locator("#signin-error")).to_have_text(re.compile("no longer accepts"))


def test_phone_width_has_no_sideways_scroll(open_page: Callable[..., Page], server: Server) -> None:
    """At 375 px the list, the details (an unfolded traceback too) and the dialog fit the
    screen width."""
    page = open_page(PHONE)
    sign_in(page, server)
    width = "document.documentElement.scrollWidth"
    assert page.evaluate(width) <= PHONE["width"]
    failed = server.failed_job("x" * 300)
    page.goto(f"{server.url}/_/?job={failed['id']}")
    expect(page.locator("#detail-body")).to_be_visible()
    assert page.evaluate(width) <= PHONE["width"]
    page.locator("details.traceback summary").click()  # long lines scroll in their box
    expect(page.locator("details.traceback pre")).to_be_visible()
    assert page.evaluate(width) <= PHONE["width"]
    page.locator("#detail-delete").click()
    box = page.locator("#confirm-dialog").bounding_box()
    assert box is not None
    assert box["width"] <= PHONE["width"]
    page.locator("#confirm-cancel").click()
