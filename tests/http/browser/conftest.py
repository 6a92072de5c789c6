"""A real `jobs serve` (SQLite in a temporary folder, test handlers) and headless Chromium.

One server and one browser serve the whole folder (starting them is most of the cost);
every test gets a fresh browser context, so its own `sessionStorage`, and makes the jobs
it changes itself. Chromium is Debian's (`apt-get install chromium`); Playwright only
drives it and never downloads a browser. Without it the browser tests fail, not skip.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)

from tests.http.browser import jobs_app

REPO = Path(__file__).resolve().parents[3]
TOKEN = "browser-test-token-7f1c2b9e4d"
CHROMIUM = Path(os.environ.get("JOBS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 375, "height": 812}
#: Jobs of this topic have no handler and a far run_at: they stay pending (paging data).
PAGING_TOPIC = "report.monthly"
PAGING_JOBS = 23
FAR_FUTURE = "2030-01-01T00:00:00Z"

expect.set_options(timeout=10_000)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A running `jobs serve` and an API client with the superuser token."""

    url: str
    api: httpx.Client
    log: Path

    def enqueue(self, topic: str, payload: Any = None, **options: Any) -> dict[str, Any]:
        """Enqueue through the API; returns the job."""
        response = self.api.post(
            "/api/jobs/enqueue", json={"topic": topic, "payload": payload, **options}
        )
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        return job

    def job(self, job_id: str) -> httpx.Response:
        """`GET /api/jobs/{id}` (the raw response: a test may expect 404)."""
        return self.api.get(f"/api/jobs/{job_id}")

    def wait_for(self, job_id: str, status: str, timeout: float = 15.0) -> dict[str, Any]:
        """The job once the server's worker has moved it to `status`."""
        deadline = time.monotonic() + timeout
        while True:
            job: dict[str, Any] = self.job(job_id).json()
            if job["status"] == status:
                return job
            if time.monotonic() > deadline:
                pytest.fail(f"job {job_id} is {job['status']}, not {status}, after {timeout}s")
            time.sleep(0.05)  # polling another process: there is no event to wait on

    def failed_job(self, error: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """A `failed` job whose last error is `HandlerFailed: <error>` (one attempt, no retry)."""
        job = self.enqueue(jobs_app.FAILS, {**(payload or {}), "error": error}, max_retries=0)
        return self.wait_for(job["id"], "failed")

    def pending_job(
        self, topic: str = jobs_app.STAYS_PENDING, payload: Any = None
    ) -> dict[str, Any]:
        """A job that stays `pending` (no handler for its topic, due in 2030)."""
        return self.enqueue(topic, payload, run_at=FAR_FUTURE)

    def stats(self) -> dict[str, Any]:
        """`GET /api/jobs/stats`."""
        stats: dict[str, Any] = self.api.get("/api/jobs/stats").json()
        return stats


def _start(tmp: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = _free_port()
    log = tmp / "serve.log"
    env = {**os.environ, "JOBS_SUPERUSER_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable, "-m", "jobs_http", "serve",
        "--db", f"sqlite:///{tmp / 'jobs.db'}",
        "--port", str(port),
        "--data-dir", str(tmp),
        "--app", "tests.http.browser.jobs_app:setup",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            pytest.fail(f"`jobs serve` exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/_/", timeout=1).status_code == 200:
                return process, url, log
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"`jobs serve` did not answer within 30 s:\n{log.read_text()}")
        time.sleep(0.1)  # waiting for another process to listen


def _seed(server: Server) -> None:
    """Jobs in every settled status, oldest first, so the newest page shows a mix."""
    for month in range(PAGING_JOBS):
        server.pending_job(PAGING_TOPIC, {"month": f"2031-{month % 12 + 1:02d}", "n": month})
    done = [
        server.enqueue(jobs_app.SUCCEEDS, {"to": f"user{n}@example.com", "template": "welcome"})
        for n in range(5)
    ]
    for n, name in enumerate(["avatar.heic", "banner.tiff"]):
        server.failed_job(f"cannot identify image file 'uploads/{name}'", {"image_id": n})
    for n in range(2):
        server.pending_job(payload={"report": "weekly", "week": n + 1})
    for job in done:
        server.wait_for(job["id"], "completed")


@contextlib.contextmanager
def running_server(tmp: Path) -> Iterator[Server]:
    """`jobs serve --db sqlite:///<tmp>/jobs.db --app tests.http.browser.jobs_app:setup`."""
    process, url, log = _start(tmp)
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    try:
        yield Server(url=url, api=api, log=log)
    finally:
        api.close()
        process.terminate()  # graceful: the worker hands running jobs back, the store closes
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # a job still running (the showcase's slow one)
            process.kill()
            process.wait()


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server most tests share, seeded with jobs in every settled status."""
    with running_server(tmp_path_factory.mktemp("jobs-serve")) as running:
        _seed(running)
        yield running


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Headless Chromium from Debian's `chromium` package."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium"
            " (`apt-get install -y chromium`, or set JOBS_CHROMIUM to another binary)."
            " Do not run `playwright install`: downloads are not used."
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Watch:
    """What a page did that it must not: dialogs, script errors, CSP violations."""

    dialogs: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)

    def on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def on_console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.csp_violations.append(message.text)


@pytest.fixture
def watch() -> Watch:
    """Collects dialogs, uncaught errors and CSP violations of the test's page."""
    return Watch()


@pytest.fixture
def open_page(browser: Browser, watch: Watch) -> Iterator[Callable[..., Page]]:
    """`open_page(viewport=LAPTOP)`: a page in a fresh context (empty sessionStorage)."""
    contexts = []

    def open_(viewport: ViewportSize = LAPTOP) -> Page:
        context = browser.new_context(viewport=viewport)
        contexts.append(context)
        page = context.new_page()
        page.on("dialog", watch.on_dialog)
        page.on("pageerror", lambda error: watch.page_errors.append(str(error)))
        page.on("console", watch.on_console)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert watch.dialogs == [], "the page opened a browser dialog"
    assert watch.page_errors == [], "the page threw"
    assert watch.csp_violations == [], "the page broke its own Content-Security-Policy"


@pytest.fixture
def page(open_page: Callable[..., Page]) -> Page:
    """A laptop-sized page."""
    return open_page()


def sign_in(page: Page, server: Server, path: str = "/_/") -> None:
    """Open `path` and sign in with the superuser token; waits for the job list or details."""
    page.goto(server.url + path)
    page.locator("#token").fill(TOKEN)
    page.locator("#signin-submit").click()
    expect(page.locator("#app-view")).to_be_visible()
    if "job=" in path:
        expect(page.locator("#detail-body")).to_be_visible()
    else:
        expect(page.locator("#jobs-table")).not_to_have_attribute("aria-busy", "true")
