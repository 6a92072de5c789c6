"""End to end: `jobs serve` as a subprocess with the example app, on SQLite and PostgreSQL.

Enqueue over HTTP, the handler runs, GET shows `completed`, stats agree, SIGTERM exits
cleanly with no job lost, and a restart keeps the generated token.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import signal
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs_core import JobStatus, open_store

from .serve_process import ServeProcess, wait_status

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'e2e.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dev dependency
        pytest.fail("psycopg is needed to create the PostgreSQL test database")
    name = f"jobs_http_e2e_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is unreachable: {exc}")
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _statuses(db: str) -> dict[str, JobStatus]:
    async def read() -> dict[str, JobStatus]:
        store = open_store(db)
        try:
            from jobs_core import JobQuery

            page = await store.list(JobQuery(limit=500))
            return {job.id: job.status for job in page.items}
        finally:
            await store.close()

    return asyncio.run(read())


#: The head of each record `jobs serve` logs (`%(asctime)s %(levelname)s %(name)s: `).
_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+: ", re.MULTILINE)


def _log_records(log: str) -> list[str]:
    """The log cut into records, each with its continuation lines (a traceback's);
    anything before the first record's head is a record of its own."""
    starts = [match.start() for match in _RECORD.finditer(log)]
    bounds = [0, *starts, len(log)]
    return [log[a:b] for a, b in itertools.pairwise(bounds) if log[a:b].strip()]


def _assert_only_expected_tracebacks(log: str, job_id: str, failures: int) -> None:
    """The only tracebacks are those of `job_id`'s final failures (the flaky handler's,
    logged at WARNING by design), `failures` of them; nothing else raised."""
    with_traceback = [record for record in _log_records(log) if "Traceback" in record]
    expected = re.compile(
        rf"^\S+ \S+ WARNING jobs_core\.worker: job {job_id} \(flaky\) failed for good at"
        r" attempt 2: FlakyError: flaky failure on attempt 2\n"
        r"Traceback \(most recent call last\):\n(  .*\n)+"
        r"examples\.app\.FlakyError: flaky failure on attempt 2\n$"
    )
    unexpected = [record for record in with_traceback if not expected.match(record)]
    assert unexpected == [], f"unexpected tracebacks in the log:\n{''.join(unexpected)}"
    assert len(with_traceback) == failures, log


def test_the_traceback_check_refuses_any_other_traceback() -> None:
    job_id = "01a23ba0-349a-73e0-9873-8b5bbf4dda82"
    head = "2026-12-03 11:18:06,704 WARNING jobs_core.worker: job"
    expected = (
        f"{head} {job_id} (flaky) failed for good at attempt 2:"
        " FlakyError: flaky failure on attempt 2\n"
        "Traceback (most recent call last):\n"
        '  File "examples/app.py", line 46, in flaky\n'
        "    raise FlakyError(...)\n"
        "examples.app.FlakyError: flaky failure on attempt 2\n"
    )
    other = (
        "2026-12-03 11:18:07,000 ERROR jobs_http: unexpected error\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n'
        "KeyError: 'x'\n"
    )
    info = "2026-12-03 11:18:07,100 INFO uvicorn.access: GET /api/jobs 200\n"
    _assert_only_expected_tracebacks(info + expected + info + expected, job_id, failures=2)
    with pytest.raises(AssertionError, match="KeyError"):
        _assert_only_expected_tracebacks(expected + other + expected, job_id, failures=2)
    with pytest.raises(AssertionError, match="unexpected tracebacks"):  # another job's
        _assert_only_expected_tracebacks(expected.replace(job_id, "other"), job_id, failures=1)
    chained = expected + "\nDuring handling of the above exception, another exception"
    with pytest.raises(AssertionError, match="unexpected tracebacks"):
        _assert_only_expected_tracebacks(chained, job_id, failures=1)
    with pytest.raises(AssertionError):  # one failure too few
        _assert_only_expected_tracebacks(expected, job_id, failures=2)


def _scenario(db: str, data_dir: Path, *, restart: bool) -> None:
    server = ServeProcess(db, data_dir)
    try:
        banner = server.wait_banner()
        assert banner[0].startswith(f"Jobs running at http://127.0.0.1:{server.port}/_/")
        token = banner[1].removeprefix("superuser token:").strip()
        token_file = data_dir / "superuser_token"
        assert token_file.read_text().strip() == token
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600

        with server.client(token) as api:
            sent = api.post(
                "/api/jobs/enqueue",
                json={"topic": "send_email", "payload": {"to": "user@example.com"}},
            )
            assert sent.status_code == 200, sent.text
            done = wait_status(api, sent.json()["id"], "completed")
            assert done["retries"] == 0
            assert done["locked_until"] is None

            fails = api.post(
                "/api/jobs/enqueue",
                json={"topic": "flaky", "payload": {"fail_rate": 1.0}, "max_retries": 1},
            ).json()
            failed = wait_status(api, fails["id"], "failed", timeout=60)
            assert failed["retries"] == 1
            assert "flaky failure" in failed["last_error"]
            assert [entry["attempt"] for entry in failed["errors"]] == [1, 2]
            assert "FlakyError: flaky failure on attempt 2" in failed["errors"][1]["traceback"]
            assert failed["result"] is None
            assert done["result"] is None
            assert done["errors"] == []
            requeued = api.post(f"/api/jobs/{fails['id']}/requeue").json()
            assert requeued["status"] == "pending"
            assert requeued["retries"] == 0
            again = wait_status(api, fails["id"], "failed", timeout=60)  # fails again: settled
            assert [entry["attempt"] for entry in again["errors"]] == [1, 2, 1, 2]

            stats = api.get("/api/jobs/stats").json()
            listed = api.get("/api/jobs", params={"limit": 500}).json()
            assert stats["total"] == listed["total"] == 2
            for status in ("pending", "processing", "completed", "failed"):
                count = sum(1 for job in listed["items"] if job["status"] == status)
                assert stats[status] == count, (status, stats, listed)

            assert (
                api.get("/api/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
            )

            # A burst, then SIGTERM at once: nothing may be lost or left processing.
            burst = [
                api.post(
                    "/api/jobs/enqueue", json={"topic": "send_email", "payload": {"n": n}}
                ).json()["id"]
                for n in range(40)
            ]
        assert server.terminate() == 0
    finally:
        server.stop()
    log = server.log.read_text()
    assert token not in log
    _assert_only_expected_tracebacks(log, fails["id"], failures=2)

    statuses = _statuses(db)
    assert set(burst) <= set(statuses), "jobs lost at shutdown"
    assert JobStatus.PROCESSING not in statuses.values(), statuses

    if not restart:
        return
    # A restart reads the same token back and does not print it again.
    again = ServeProcess(db, data_dir)
    try:
        banner = again.wait_banner()
        assert token not in "".join(banner)
        assert "superuser_token" in banner[1]
        with again.client(token) as api:
            assert api.get("/api/jobs/stats").json()["total"] == 42
        assert again.terminate() == 0
    finally:
        again.stop()


def test_serve_end_to_end_sqlite(sqlite_url: str, tmp_path: Path) -> None:
    _scenario(sqlite_url, tmp_path / "jobs_data", restart=True)


def test_serve_end_to_end_postgres(postgres_url: str, tmp_path: Path) -> None:
    _scenario(postgres_url, tmp_path / "jobs_data", restart=False)  # restart: same code as SQLite


def test_serve_binds_localhost_by_default_and_stops_on_sigint(tmp_path: Path) -> None:
    server = ServeProcess("memory://", tmp_path / "data")
    try:
        banner = server.wait_banner()
        assert "http://127.0.0.1:" in banner[0]
        assert server.terminate(sig=signal.SIGINT) == 0
    finally:
        server.stop()


def test_serve_fails_cleanly_on_a_busy_port(tmp_path: Path) -> None:
    first = ServeProcess("memory://", tmp_path / "a")
    try:
        first.wait_banner()
        second = ServeProcess("memory://", tmp_path / "b", "--port", str(first.port))
        code = second.proc.wait(timeout=30)
        second.stop()
        assert code != 0
        assert not any(line.startswith("superuser token:") for line in second.stdout)
        assert first.terminate() == 0
    finally:
        first.stop()
