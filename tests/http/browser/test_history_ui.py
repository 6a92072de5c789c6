"""A job's result and attempt history in the details, in headless Chromium against a real
`jobs serve`.

The history is a timeline, oldest first and newest last (the server's order): each failed
attempt with its number, time and error, its traceback folded in a `<details>` until
asked for. The result of a completed job is shown as pretty JSON. Whatever a handler put
in its error, traceback or result is shown as text and runs nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.http.browser import jobs_app
from tests.http.browser.conftest import Server, sign_in

pytestmark = pytest.mark.browser

IMG = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>window.__xss=1</script>"


def attempts(page: Page) -> Locator:
    return page.locator("#detail-attempts > li.attempt")


def assert_nothing_ran(page: Page) -> None:
    """No markup of the job's text became elements (an alert would fail `watch`)."""
    assert page.evaluate("typeof window.__xss") == "undefined"
    for tag in ("img", "script", "b"):
        assert page.locator(f"#detail-body {tag}").count() == 0, tag


def assert_entry(item: Locator, entry: dict[str, Any]) -> None:
    """The entry shows the attempt's number, time and error, as text."""
    expect(item).to_have_attribute("data-attempt", str(entry["attempt"]))
    expect(item.locator(".attempt-number")).to_have_text(f"Attempt {entry['attempt']}")
    expect(item.locator("time")).to_have_attribute("datetime", entry["at"])
    expect(item.locator("time")).to_have_text(entry["at"][:19].replace("T", " "))
    assert item.locator(".attempt-error").text_content() == entry["error"]


def test_the_history_is_a_timeline_with_folded_tracebacks_and_the_result_shown(
    page: Page, server: Server
) -> None:
    """Two failed attempts, then a result: both entries, newest last; each traceback is
    hidden until its summary is clicked; the result is pretty JSON; markup stays text."""
    result = {"invoice": 1842, "html": IMG, "lines": [{"sku": "A-1", "qty": 2}]}
    error = f"ledger said {IMG} {SCRIPT}"
    job = server.enqueue(jobs_app.FAILS_TWICE, {"error": error, "result": result}, max_retries=2)
    done = server.wait_for(job["id"], "completed", timeout=30)
    history = done["errors"]
    assert [entry["attempt"] for entry in history] == [1, 2]
    assert all(entry["traceback"] for entry in history)
    assert IMG in history[0]["traceback"]  # the error's text is the traceback's last line
    assert history[0]["at"] <= history[1]["at"]

    sign_in(page, server, f"/_/?job={job['id']}")
    expect(page.locator("#detail-status")).to_have_text("completed")
    expect(page.locator("#detail-attempts-title")).to_have_text("Failed attempts (2, newest last)")
    expect(page.locator("#detail-attempts-none")).to_be_hidden()
    expect(attempts(page)).to_have_count(2)
    expect(page.locator("#detail-attempts .timeline-mark")).to_have_count(0)  # no requeue
    for index, entry in enumerate(history):
        assert_entry(attempts(page).nth(index), entry)

    tracebacks = [attempts(page).nth(index).locator("details.traceback") for index in (0, 1)]
    for folded in tracebacks:
        expect(folded.locator("summary")).to_have_text("Traceback")
        expect(folded.locator("summary")).to_be_visible()
        expect(folded.locator("pre")).to_be_hidden()
    tracebacks[0].locator("summary").click()
    expect(tracebacks[0].locator("pre")).to_be_visible()
    assert tracebacks[0].locator("pre").text_content() == history[0]["traceback"]
    expect(tracebacks[0].locator("pre")).to_contain_text("in _call_the_ledger")
    expect(tracebacks[1].locator("pre")).to_be_hidden()  # each folds on its own
    tracebacks[1].locator("summary").click()
    expect(tracebacks[1].locator("pre")).to_be_visible()
    assert tracebacks[1].locator("pre").text_content() == history[1]["traceback"]
    tracebacks[0].locator("summary").click()  # and folds again
    expect(tracebacks[0].locator("pre")).to_be_hidden()

    expect(page.locator("#detail-result-section")).to_be_visible()
    shown = page.locator("#detail-result").text_content()
    assert shown == json.dumps(result, indent=2)
    assert IMG in shown
    assert_nothing_ran(page)
    # The `watch` fixture then asserts: no alert fired, no error thrown, no CSP violation.


def test_a_requeue_is_marked_where_the_attempts_count_from_1_again(
    page: Page, server: Server
) -> None:
    job = server.failed_job("bucket gone")
    requeued = server.api.post(f"/api/jobs/{job['id']}/requeue").json()
    assert requeued["errors"] == job["errors"]  # a requeue keeps the history
    again = server.wait_for(job["id"], "failed")  # requeued jobs are pending at once
    assert [entry["attempt"] for entry in again["errors"]] == [1, 1]

    sign_in(page, server, f"/_/?job={job['id']}")
    items = page.locator("#detail-attempts > li")
    expect(items).to_have_count(3)
    expect(items.nth(1)).to_have_class("timeline-mark")
    expect(items.nth(1)).to_have_text("Requeued")
    for index, entry in zip((0, 2), again["errors"], strict=True):
        assert_entry(items.nth(index), entry)
    expect(page.locator("#detail-result-section")).to_be_hidden()  # only completed jobs


def test_an_attempt_without_a_traceback_says_so(page: Page, server: Server) -> None:
    """A timeout raises nothing in the handler: no fold, a note instead."""
    job = server.enqueue(jobs_app.TIMES_OUT, {"pages": 3}, max_retries=0)
    failed = server.wait_for(job["id"], "failed")
    [entry] = failed["errors"]
    assert entry["traceback"] is None
    assert entry["error"].startswith("timed out after 0.3s")

    sign_in(page, server, f"/_/?job={job['id']}")
    expect(attempts(page)).to_have_count(1)
    assert_entry(attempts(page).first, entry)
    expect(attempts(page).first.locator("details")).to_have_count(0)
    expect(attempts(page).first.locator(".no-traceback")).to_have_text(
        "No traceback: nothing was raised."
    )


def test_a_job_that_never_failed_has_an_empty_history(page: Page, server: Server) -> None:
    sent = server.enqueue(jobs_app.SUCCEEDS, {"to": "x@example.com"})
    done = server.wait_for(sent["id"], "completed")
    assert done["errors"] == []
    assert done["result"] is None
    sign_in(page, server, f"/_/?job={done['id']}")
    expect(page.locator("#detail-attempts-title")).to_have_text("Failed attempts")
    expect(page.locator("#detail-attempts-none")).to_be_visible()
    expect(attempts(page)).to_have_count(0)
    expect(page.locator("#detail-result")).to_have_text("The handler returned nothing.")
    expect(page.locator("#detail-result")).to_have_class("code none")
    pending = server.pending_job()
    page.goto(f"{server.url}/_/?job={pending['id']}")
    expect(page.locator("#detail-status")).to_have_text("pending")
    expect(page.locator("#detail-result-section")).to_be_hidden()
    expect(page.locator("#detail-attempts-none")).to_be_visible()
