"""SQLite under multi-process contention (RELIABILITY §4.5): 4 processes on one file,
each serving the HTTP API and running a worker, for 60 s.

No client ever sees a 5xx or "database is locked"; no worker dies; nothing is lost or
claimed twice. A busy that was retried and then succeeded is counted and printed.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import attrs
import httpx
import pytest

from jobs_core import Jobs, open_store
from tests.faults.fleet import Fleet, percentile, publish, seed
from tests.faults.ledger import Ledger, check_run
from tests.faults.proxy import free_port

TOKEN = "fault-tests-superuser-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DURATION = 60.0
ENQUEUE_RATE = 25.0  # per process
READ_RATE = 10.0


async def _ready(base: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get("/api/jobs/stats", headers=AUTH)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{base} never answered")


@attrs.define
class Tally:
    """What the clients saw."""

    statuses: list[int] = attrs.field(factory=list)
    enqueue_latency: list[float] = attrs.field(factory=list)
    read_latency: list[float] = attrs.field(factory=list)
    ids: list[str] = attrs.field(factory=list)
    bodies: list[str] = attrs.field(factory=list)


async def _load(
    base: str, *, rate: float, until: float, make: str, tally: Tally, rng: random.Random
) -> None:
    """Send requests at `rate`/s until `until` (monotonic); record every answer."""
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=AUTH) as client:
        next_at = time.monotonic()
        n = 0
        while next_at < until:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            began = time.monotonic()
            try:
                if make == "enqueue":
                    response = await client.post(
                        "/api/jobs/enqueue", json={"topic": "chaos", "payload": {"n": n}}
                    )
                elif rng.random() < 0.5:
                    response = await client.get("/api/jobs/stats")
                else:
                    response = await client.get("/api/jobs", params={"limit": 50})
            except httpx.TransportError as exc:
                tally.statuses.append(-1)
                tally.bodies.append(f"transport error: {exc!r}")
            else:
                tally.statuses.append(response.status_code)
                latency = time.monotonic() - began
                if make == "enqueue":
                    tally.enqueue_latency.append(latency)
                else:
                    tally.read_latency.append(latency)
                if response.status_code >= 400:
                    tally.bodies.append(response.text)
                elif make == "enqueue":
                    tally.ids.append(response.json()["id"])
            n += 1
            next_at += 1 / rate


@pytest.mark.fault
@pytest.mark.fault_sqlite
@pytest.mark.timeout(400)
async def test_four_processes_serving_and_working_on_one_file(tmp_path: Path) -> None:
    rng = random.Random(seed())
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    ledger_path = tmp_path / "ledger.db"
    Ledger(ledger_path).conn.close()
    ports = [free_port() for _ in range(4)]
    fleet = Fleet(
        db=db,
        ledger=ledger_path,
        logs=tmp_path / "logs",
        size=4,
        args=["--pool", "4", "--batch", "4", "--lock", "3", "--poll", "0.2", "--token", TOKEN],
    )
    fleet.procs = [fleet.spawn(i, "--http-port", str(port)) for i, port in enumerate(ports)]
    jobs = Jobs(open_store(db))
    tally = Tally()
    try:
        await asyncio.gather(*(_ready(f"http://127.0.0.1:{port}") for port in ports))
        until = time.monotonic() + DURATION
        await asyncio.gather(
            *(
                _load(
                    f"http://127.0.0.1:{port}",
                    rate=ENQUEUE_RATE,
                    until=until,
                    make="enqueue",
                    tally=tally,
                    rng=rng,
                )
                for port in ports
            ),
            _load(
                f"http://127.0.0.1:{ports[0]}",
                rate=READ_RATE,
                until=until,
                make="read",
                tally=tally,
                rng=rng,
            ),
        )
        dead_during_load = fleet.dead()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            stats = await jobs.stats()
            if stats.pending + stats.processing == 0:
                break
            await asyncio.sleep(0.5)
        dead = fleet.dead()
    finally:
        codes = fleet.stop()
    ledger = Ledger(ledger_path)
    try:
        report = await check_run(tally.ids, jobs, ledger)
    finally:
        ledger.close()
        await jobs.aclose()
    logs = fleet.log_text()
    busy_in_logs = logs.count("database is locked") + logs.count("busy")
    server_errors = [s for s in tally.statuses if s >= 500 or s < 0]
    publish(
        "sqlite-contention",
        {
            **report.figures,
            "requests": len(tally.statuses),
            "http_5xx_or_transport_errors": len(server_errors),
            "http_4xx": sum(1 for s in tally.statuses if 400 <= s < 500),
            "locked_in_responses": sum("locked" in body for body in tally.bodies),
            "busy_retries_in_worker_logs": busy_in_logs,
            "enqueue_p50_ms": percentile(tally.enqueue_latency, 50) * 1000,
            "enqueue_p99_ms": percentile(tally.enqueue_latency, 99) * 1000,
            "read_p99_ms": percentile(tally.read_latency, 99) * 1000,
            "claims_per_s": report.figures["executions"] / DURATION,
            "worker_exit_codes": codes,
        },
    )
    report.assert_ok()
    assert server_errors == [], tally.bodies[:5]
    assert not any("locked" in body for body in tally.bodies)
    assert dead_during_load == []
    assert dead == []
    assert codes == [0, 0, 0, 0]
    assert len(tally.ids) >= 0.9 * ENQUEUE_RATE * 4 * DURATION  # the load really ran


@pytest.mark.fault
@pytest.mark.fault_sqlite
@pytest.mark.timeout(200)
async def test_stats_hammer_keeps_the_service_and_the_worker_going(tmp_path: Path) -> None:
    """RELIABILITY §4.8 last row: `/api/jobs/stats` as fast as 50 clients can ask, for
    10 s, on a process that also runs the worker. No error, p99 reported, and the worker
    keeps claiming meanwhile."""
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    ledger_path = tmp_path / "ledger.db"
    Ledger(ledger_path).conn.close()
    jobs = Jobs(open_store(db))
    ids = [j.id for j in await jobs.enqueue_many("chaos", [{"n": n} for n in range(500)])]
    port = free_port()
    fleet = Fleet(
        db=db,
        ledger=ledger_path,
        logs=tmp_path / "logs",
        size=1,
        args=["--pool", "4", "--batch", "4", "--token", TOKEN],
    )
    fleet.procs = [fleet.spawn(0, "--http-port", str(port))]
    base = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    statuses: list[int] = []
    try:
        await _ready(base)
        before = (await jobs.stats()).completed
        until = time.monotonic() + 10

        async def client() -> None:
            async with httpx.AsyncClient(base_url=base, timeout=30, headers=AUTH) as c:
                while time.monotonic() < until:
                    began = time.monotonic()
                    try:
                        response = await c.get("/api/jobs/stats")
                        statuses.append(response.status_code)
                    except httpx.TransportError:
                        statuses.append(-1)
                    latencies.append(time.monotonic() - began)

        await asyncio.gather(*(client() for _ in range(50)))
        during = (await jobs.stats()).completed - before
        deadline = time.monotonic() + 120
        while (await jobs.stats()).completed < len(ids):
            assert time.monotonic() < deadline, "the backlog did not drain"
            await asyncio.sleep(0.5)
    finally:
        codes = fleet.stop()
        await jobs.aclose()
    publish(
        "sqlite-stats-hammer",
        {
            "requests": len(statuses),
            "requests_per_s": len(statuses) / 10,
            "errors": sum(1 for s in statuses if s != 200),
            "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000,
            "jobs_completed_during_hammer": during,
        },
    )
    assert set(statuses) == {200}
    assert during > 0, "the worker stopped claiming while the API was hammered"
    assert codes == [0]
