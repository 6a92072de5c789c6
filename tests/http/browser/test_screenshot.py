"""Screenshots of the main screen (laptop and phone) for people to look at, from a fresh server.

Every run writes them to artifacts/ (not tracked), from their own server with a small,
realistic set of jobs in every status, so they do not depend on what the other tests did.
With JOBS_UPDATE_SCREENSHOTS=1 they go to docs/ui-screenshot.png (shown in the README) and
docs/img/ui-phone.png instead, to refresh the committed pictures.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, ViewportSize, expect

from tests.http.browser import jobs_app
from tests.http.browser.conftest import LAPTOP, PHONE, REPO, Server, running_server, sign_in

pytestmark = pytest.mark.browser

_UPDATE = os.environ.get("JOBS_UPDATE_SCREENSHOTS") == "1"
LAPTOP_SHOT = REPO / ("docs/ui-screenshot.png" if _UPDATE else "artifacts/ui-screenshot.png")
PHONE_SHOT = REPO / ("docs/img/ui-phone.png" if _UPDATE else "artifacts/ui-phone.png")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def showcase(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with a few jobs of each status, as an on-call person might find it."""
    with running_server(tmp_path_factory.mktemp("showcase")) as server:
        later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
        for n in range(3):
            server.enqueue(jobs_app.STAYS_PENDING, {"report": "weekly", "team": n}, run_at=later)
        dropped = server.enqueue(jobs_app.STAYS_PENDING, {"report": "yearly"}, run_at=later)
        server.api.post(f"/api/jobs/{dropped['id']}/cancel")
        done = [
            server.enqueue(jobs_app.SUCCEEDS, {"to": f"{name}@example.com", "template": "welcome"})
            for name in ("ana", "bo", "chen", "dara", "eli", "fay", "gus")
        ]
        for job in done:
            server.wait_for(job["id"], "completed")
        server.failed_job("cannot identify image file 'uploads/avatar.heic'", {"image_id": 1841})
        server.failed_job("S3 PutObject: AccessDenied for bucket 'thumbs'", {"image_id": 1842})
        slow = server.enqueue(jobs_app.RUNS_LONG, {"video_id": 77, "preset": "1080p"})
        server.wait_for(slow["id"], "processing")
        yield server


@pytest.mark.parametrize(
    ("viewport", "path"), [(LAPTOP, LAPTOP_SHOT), (PHONE, PHONE_SHOT)], ids=["laptop", "phone"]
)
def test_screenshot_of_the_main_screen(
    open_page: Callable[..., Page], showcase: Server, viewport: ViewportSize, path: Path
) -> None:
    """The signed-in main screen, saved as a PNG."""
    page = open_page(viewport)
    sign_in(page, showcase)
    expect(page.locator("#stat-processing")).to_have_text("1")
    expect(page.locator("#stat-cancelled")).to_have_text("1")
    expect(page.locator("#jobs-body tr")).to_have_count(14)
    page.mouse.move(0, 0)  # no row hovered
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), animations="disabled", caret="hide")
    assert path.read_bytes().startswith(PNG)
