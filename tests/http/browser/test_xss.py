"""Stored XSS: whatever a payload or an error message holds is shown as text and runs nothing."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from tests.http.browser import jobs_app
from tests.http.browser.conftest import Server, sign_in

pytestmark = pytest.mark.browser

IMG = '<img src=x onerror="window.__xss=1">'
SVG = '"><svg onload=window.__xss=1>'
SCRIPT = "<script>window.__xss=1</script>"
JS_URL = "javascript:window.__xss=1"
ATTACKS = (IMG, SVG, SCRIPT, JS_URL)
BIG = "<b>" + "x" * 100_000 + "</b>"


def assert_nothing_ran(page: Page) -> None:
    assert page.evaluate("typeof window.__xss") == "undefined"
    for tag in ("img", "svg", "script", "b", "iframe", "object"):
        assert page.locator(f"#jobs-body {tag}, #detail-body {tag}").count() == 0, tag


def test_payloads_and_errors_are_shown_as_text(page: Page, server: Server) -> None:
    """List, failed view and details show the markup as text; no script, handler or dialog runs."""
    error = f"{SCRIPT} {IMG} {SVG}"
    payload = {IMG: SVG, "script": SCRIPT, "link": JS_URL, SVG: [IMG, SCRIPT], "big": BIG}
    job = server.failed_job(error, payload)
    assert job["last_error"] == f"HandlerFailed: {error}"

    sign_in(page, server, f"/_/?topic={jobs_app.FAILS}&status=failed")
    row = page.locator(f'#jobs-body tr[data-job-id="{job["id"]}"]')
    expect(row.locator(".row-error")).to_have_text(job["last_error"])
    assert_nothing_ran(page)

    row.locator("a.job-link").click()
    expect(page.locator("#detail-error")).to_have_text(job["last_error"])
    shown = page.locator("#detail-payload").inner_text()
    assert json.loads(shown) == job["payload"]
    assert len(shown) > 100_000
    for attack in ATTACKS:
        assert attack in page.locator("#detail-body").inner_text()
    expect(page.locator("#detail-error").get_by_text(SCRIPT)).to_be_visible()

    page.locator("#detail-delete").click()  # the confirmation names the job as text too
    expect(page.locator("#confirm-dialog")).to_be_visible()
    page.locator("#confirm-cancel").click()
    assert_nothing_ran(page)
    # The `watch` fixture then asserts: no dialog fired, no error thrown, no CSP violation.


def test_the_page_is_served_with_its_security_headers(page: Page, server: Server) -> None:
    """The real server's page and assets carry the CSP, nosniff and no-referrer."""
    responses = []
    page.on("response", lambda r: responses.append(r) if "/_/" in r.url else None)
    sign_in(page, server)
    served = {r.url.removeprefix(server.url) for r in responses}
    assert {"/_/", "/_/static/app.js", "/_/static/api.js", "/_/static/style.css"} <= served
    for response in responses:
        headers = response.all_headers()
        assert headers["content-security-policy"].startswith(
            "default-src 'self'; script-src 'self';"
        )
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
