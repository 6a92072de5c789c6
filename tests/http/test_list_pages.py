"""GET /api/jobs pages: without payloads, bounded in bytes, encoded off the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from litestar import Litestar
from litestar.testing import AsyncTestClient

from jobs_core import Jobs
from jobs_http import create_app
from jobs_sqlite import SQLiteStore

from .conftest import AUTH, TOKEN, Client, assert_error, assert_job, make_jobs


#: A payload whose JSON text is exactly `n` bytes: a string of n - 2 letters.
def _text_of(n: int) -> str:
    """A payload whose job weighs `n` bytes in a page's budget: its JSON text (the
    string and its quotes) and the new job's empty history (`[]`)."""
    return "x" * (n - 4)


async def _enqueue(client: Client, payload: object) -> str:
    response = await client.post("/api/jobs/enqueue", json={"topic": "ok", "payload": payload})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


@pytest.fixture
async def small_pages() -> AsyncIterator[Client]:
    """An app whose list pages hold 2 500 payload bytes."""
    app = create_app(make_jobs(), token=TOKEN, run_worker=False, page_bytes=2500)
    async with AsyncTestClient(app=app) as c:
        c.headers.update(AUTH)
        yield c


async def test_payloads_false_lists_without_payloads(client: Client) -> None:
    ids = [await _enqueue(client, {"n": n}) for n in range(3)]
    page = (await client.get("/api/jobs", params={"payloads": "false"})).json()
    assert (page["payloads"], page["truncated"], page["total"]) == (False, False, 3)
    assert [item["id"] for item in page["items"]] == ids[::-1]
    for item in page["items"]:
        assert_job(item)
        assert item["payload"] is None
    full = (await client.get("/api/jobs", params={"payloads": "true"})).json()
    assert full["payloads"] is True
    assert [item["payload"] for item in full["items"]] == [{"n": 2}, {"n": 1}, {"n": 0}]
    detail = (await client.get(f"/api/jobs/{ids[0]}")).json()
    assert detail["payload"] == {"n": 0}, "a job's own page keeps its payload"


@pytest.mark.parametrize("value", ["1", "0", "yes", "no", "TRUE", "False", "", "on"])
async def test_payloads_takes_only_true_or_false(client: Client, value: str) -> None:
    body = assert_error(await client.get("/api/jobs", params={"payloads": value}), 400)
    assert "payloads" in str(body["data"]) or "payloads" in body["message"]


async def test_a_page_stops_at_the_byte_budget_and_says_so(small_pages: Client) -> None:
    sizes = [1000, 1000, 1000, 100]  # enqueued oldest first; listed newest first
    ids = [await _enqueue(small_pages, _text_of(size)) for size in sizes]
    page = (await small_pages.get("/api/jobs", params={"limit": 10})).json()
    assert [item["id"] for item in page["items"]] == [ids[3], ids[2], ids[1]]
    assert (page["truncated"], page["total"], page["limit"]) == (True, 4, 10)
    rest = (await small_pages.get("/api/jobs", params={"offset": 3})).json()
    assert [item["id"] for item in rest["items"]] == [ids[0]]
    assert rest["truncated"] is False
    bare = (await small_pages.get("/api/jobs", params={"payloads": "false"})).json()
    assert (len(bare["items"]), bare["truncated"]) == (4, False)


async def test_a_job_bigger_than_the_budget_is_still_listed(small_pages: Client) -> None:
    big = await _enqueue(small_pages, _text_of(10_000))
    page = (await small_pages.get("/api/jobs")).json()
    assert [item["id"] for item in page["items"]] == [big]
    assert page["truncated"] is False
    assert page["items"][0]["payload"] == _text_of(10_000)


async def test_default_budget_is_eight_mib(tmp_path: Path) -> None:
    """Twelve 1 MiB payloads: the default page holds eight of them."""
    store = SQLiteStore(tmp_path / "jobs.db")
    app = create_app(Jobs(store), token=TOKEN, run_worker=False)
    try:
        async with AsyncTestClient(app=app) as client:
            client.headers.update(AUTH)
            for _ in range(12):
                await _enqueue(client, _text_of(2**20))
            response = await client.get("/api/jobs", params={"limit": 500})
            page = response.json()
            assert (len(page["items"]), page["truncated"], page["total"]) == (8, True, 12)
            assert len(response.content) < 8 * 2**20 + 64 * 1024
    finally:
        await store.close()


async def _largest_loop_gap_while(app: Litestar, url: str) -> tuple[float, float]:
    """(largest gap between ticks of a 1 ms ticker, duration) while GET `url` runs.

    The app is served by uvicorn on this event loop, as `jobs serve` runs it, so the
    ticker shares the loop with the request's handling.
    """
    gaps: list[float] = []
    running = True

    async def ticker() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=AUTH) as client:
            await client.get("/api/jobs/stats")  # connection and first-request costs
            tick = asyncio.create_task(ticker())
            await asyncio.sleep(0.01)
            gaps.clear()
            started = time.perf_counter()
            response = await client.get(url, timeout=60)
            duration = time.perf_counter() - started
            running = False
            await tick
    finally:
        server.should_exit = True
        await serving
    assert response.status_code == 200
    assert len(response.json()["items"]) == 64
    return max(gaps), duration


async def test_a_big_page_does_not_stall_the_event_loop(tmp_path: Path) -> None:
    """64 x 1 MiB payloads in one page: the loop keeps ticking while it is built.

    The store reads on its own thread and the page is encoded on a worker thread, one
    job at a time; so the longest stall of the loop is a small part of the request,
    where encoding the page on the loop would stall it for nearly all of it.

    Measured up to three times, passing on the first clean run: a stall the code causes
    shows in every run, while another process taking this one's core (CI runs other work
    beside the suite) lengthens a random gap of one run.
    """
    store = SQLiteStore(tmp_path / "jobs.db")
    try:
        jobs = Jobs(store)
        await jobs.enqueue_many("ok", [_text_of(2**20)] * 64)
        app = create_app(jobs, token=TOKEN, run_worker=False, page_bytes=2**30)
        runs = []
        for _ in range(3):
            gap, duration = await _largest_loop_gap_while(app, "/api/jobs?limit=64")
            runs.append(f"{gap * 1000:.0f} ms of {duration * 1000:.0f} ms")
            if gap < duration / 4:
                break
        else:
            raise AssertionError(f"the loop stalled in every run: {runs}")
    finally:
        await store.close()
