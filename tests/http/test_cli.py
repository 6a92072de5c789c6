"""The `jobs` command's admin sub-commands, run in-process against a SQLite file."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobs_core import EnqueueOptions, Job, Jobs, JobsConfig, open_store
from jobs_http.__main__ import AppLoadError, build_jobs, load_app, main

#: A failure message meant to hurt a terminal: a clear-screen sequence and a carriage
#: return that would overwrite the line.
HOSTILE = "bad \x1b[2J\rnews"


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_enqueue_list_get_stats_delete(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "enqueue", "send_email", '{"to": "a@b.c"}', "--db", db, "--json")
    assert code == 0
    job = json.loads(out)
    assert job["status"] == "pending"
    assert job["payload"] == {"to": "a@b.c"}

    code, out, _ = run(capsys, "list", "--db", db)
    assert code == 0
    assert out.splitlines()[0].split() == [
        "ID",
        "TOPIC",
        "STATUS",
        "PRIORITY",
        "UNIQUE_KEY",
        "RETRIES",
        "RUN_AT",
        "UPDATED",
        "ERRORS",
        "LAST_ERROR",
    ]
    assert job["id"] in out
    assert "1-1 of 1" in out

    code, out, _ = run(capsys, "list", "--db", db, "--json", "--status", "pending")
    page = json.loads(out)
    assert page["total"] == 1
    assert page["items"][0]["id"] == job["id"]

    code, out, _ = run(capsys, "get", job["id"], "--db", db)
    assert code == 0
    assert 'payload: {"to": "a@b.c"}' in out

    code, out, _ = run(capsys, "stats", "--db", db, "--json")
    assert json.loads(out) == {
        "pending": 1,
        "processing": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
        "total": 1,
        "success_rate": 0.0,
    }
    code, out, _ = run(capsys, "stats", "--db", db)
    assert "pending" in out

    code, out, _ = run(capsys, "requeue", job["id"], "--db", db)
    assert code == 1  # pending jobs cannot be requeued

    code, out, _ = run(capsys, "delete", job["id"], "--db", db)
    assert code == 0
    assert f"deleted {job['id']}" in out
    code, _, err = run(capsys, "delete", job["id"], "--db", db)
    assert code == 1
    assert "not found" in err


def test_cancel_a_pending_job(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`jobs cancel ID` prints the cancelled job; a final job or an unknown id is exit 1."""
    _, out, _ = run(capsys, "enqueue", "report", "--run-at", "2030-01-01T00:00:00Z", "--db", db)
    job_id = out.splitlines()[1].split()[0]

    code, out, err = run(capsys, "cancel", job_id, "--db", db)
    assert (code, err) == (0, "")
    assert out.splitlines()[1].split()[:3] == [job_id, "report", "cancelled"]
    assert "cancel requested" not in out  # it never ran: nothing to ask its worker
    code, out, _ = run(capsys, "get", job_id, "--db", db, "--json")
    assert json.loads(out)["status"] == "cancelled"
    code, out, _ = run(capsys, "stats", "--db", db, "--json")
    assert json.loads(out)["cancelled"] == 1
    code, out, _ = run(capsys, "list", "--db", db, "--status", "cancelled", "--json")
    assert [item["id"] for item in json.loads(out)["items"]] == [job_id]

    code, out, err = run(capsys, "cancel", job_id, "--db", db)
    assert (code, out) == (1, "")
    assert err.startswith("jobs: error: cannot cancel job")
    assert "it is cancelled" in err
    code, _, err = run(capsys, "cancel", "missing", "--db", db)
    assert code == 1
    assert "not found" in err
    code, out, _ = run(capsys, "requeue", job_id, "--db", db, "--json")
    assert code == 0  # a cancelled job may run again
    assert json.loads(out)["status"] == "pending"


def test_cancel_a_processing_job_asks_its_worker(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A running job stays processing, with the cancel request shown (and in --json)."""
    _, out, _ = run(capsys, "enqueue", "report", "--db", db, "--json")
    job_id = json.loads(out)["id"]

    async def claim() -> None:
        store = open_store(db)
        try:
            jobs = await store.claim(
                topics={"report"},
                now=datetime.now(UTC),
                lease=timedelta(minutes=5),
                limit=1,
            )
            assert [job.id for job in jobs] == [job_id]
        finally:
            await store.close()

    asyncio.run(claim())
    code, out, err = run(capsys, "cancel", job_id, "--db", db, "--json")
    assert (code, err) == (0, "")
    job = json.loads(out)
    assert job["status"] == "processing"
    assert job["cancel_requested"] is not None
    assert job["actions"] == ["cancel"]
    code, out, _ = run(capsys, "cancel", job_id, "--db", db)
    assert code == 0
    assert out.splitlines()[1].split()[2] == "processing"
    assert f"cancel requested: {job['cancel_requested']}" in out


def _run_a_job_that_fails_twice_then_returns(db: str, payload: object) -> str:
    """Enqueue `payload` on `report`, run it: two failures with tracebacks, then it
    returns `{"sent": payload}`; its id."""

    async def scenario() -> str:
        jobs = Jobs(open_store(db), config=JobsConfig(backoff=lambda n: timedelta(0)))
        calls = 0

        async def report(job: Job) -> dict[str, object]:
            nonlocal calls
            calls += 1
            if calls <= 2:
                raise RuntimeError(f"{HOSTILE} {calls}")
            return {"sent": job.payload}

        jobs.register("report", report)
        try:
            options = EnqueueOptions(max_retries=2)
            job = await jobs.enqueue_with_options("report", payload, options)
            while await jobs.run_once():
                pass
            return job.id
        finally:
            await jobs.aclose()

    return asyncio.run(scenario())


def test_get_shows_the_result_and_each_failed_attempt(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Attempt number, time and error per line, newest last; tracebacks only when asked;
    control characters of the handler's text printed as `\\xNN`, not sent to the terminal."""
    job_id = _run_a_job_that_fails_twice_then_returns(db, ["a", "b"])
    code, out, _ = run(capsys, "get", job_id, "--db", db, "--json")
    assert code == 0
    job = json.loads(out)
    assert job["status"] == "completed"
    assert job["result"] == {"sent": ["a", "b"]}
    assert [entry["attempt"] for entry in job["errors"]] == [1, 2]
    assert job["errors"][0]["traceback"].startswith("Traceback (most recent call last):")
    assert job["errors"][0]["error"] == f"RuntimeError: {HOSTILE} 1"  # JSON: as it is

    code, out, _ = run(capsys, "get", job_id, "--db", db)
    assert code == 0
    lines = out.splitlines()
    assert lines[1].split()[8] == "2"  # ERRORS
    assert 'result: {"sent": ["a", "b"]}' in lines
    at = [entry["at"] for entry in job["errors"]]
    history = lines.index("failed attempts (2, newest last):")
    assert lines[history + 1 : history + 3] == [
        f"  #1  {at[0]}  RuntimeError: bad \\x1b[2J news 1",  # one line: \r is a space
        f"  #2  {at[1]}  RuntimeError: bad \\x1b[2J news 2",
    ]
    assert lines[history + 3] == f"(tracebacks: jobs get {job_id} --traceback)"
    assert "Traceback" not in out
    assert "\x1b" not in out
    assert "\r" not in out

    code, out, _ = run(capsys, "get", job_id, "--db", db, "--traceback")
    assert code == 0
    lines = out.splitlines()
    history = lines.index("failed attempts (2, newest last):")
    assert lines[history + 1] == f"  #1  {at[0]}  RuntimeError: bad \\x1b[2J news 1"
    assert lines[history + 2] == "      Traceback (most recent call last):"
    second = lines.index(f"  #2  {at[1]}  RuntimeError: bad \\x1b[2J news 2")
    traceback = lines[history + 2 : second]
    assert traceback[-1] == "      RuntimeError: bad \\x1b[2J\\x0dnews 1"
    assert all(line.startswith("      ") for line in traceback)
    assert any("in report" in line for line in traceback)
    assert lines[-1] == "      RuntimeError: bad \\x1b[2J\\x0dnews 2"
    assert "--traceback)" not in out
    assert "\x1b" not in out
    assert "\r" not in out


def test_list_counts_failed_attempts_without_their_tracebacks(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = _run_a_job_that_fails_twice_then_returns(db, None)
    run(capsys, "enqueue", "report", "--run-at", "2030-01-01T00:00:00Z", "--db", db)
    code, out, _ = run(capsys, "list", "--db", db)
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:-1]}
    assert rows[job_id][8] == "2"
    assert [row[8] for key, row in rows.items() if key != job_id] == ["0"]
    assert "Traceback" not in out
    assert "result" not in out
    code, out, _ = run(capsys, "list", "--db", db, "--json")
    items = {item["id"]: item for item in json.loads(out)["items"]}
    assert items[job_id]["result"] == {"sent": None}
    assert len(items[job_id]["errors"]) == 2  # --json shows the jobs as the API does


def test_only_completed_jobs_print_a_result_line(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = run(capsys, "enqueue", "report", "--db", db, "--json")
    code, out, _ = run(capsys, "get", json.loads(out)["id"], "--db", db)
    assert code == 0
    assert "result:" not in out
    assert "failed attempts" not in out
    assert "--traceback" not in out


def test_enqueue_with_options(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(
        capsys,
        "enqueue",
        "report",
        "--run-at",
        "2030-01-01T01:00:00+01:00",
        "--max-retries",
        "7",
        "--db",
        db,
        "--json",
    )
    job = json.loads(out)
    assert job["run_at"] == "2030-01-01T00:00:00Z"
    assert job["max_retries"] == 7
    assert job["priority"] == 0
    assert job["payload"] is None


def test_enqueue_with_a_priority_and_list_shows_it(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--priority N` (negative too); `jobs list` has a PRIORITY column, and `jobs get`."""
    later = ["--run-at", "2030-01-01T00:00:00Z", "--db", db]
    code, out, _ = run(capsys, "enqueue", "report", "--priority", "-100", *later, "--json")
    assert code == 0
    low = json.loads(out)
    assert low["priority"] == -100
    code, out, _ = run(capsys, "enqueue", "report", "--priority", "42", *later)
    assert code == 0
    header, row = out.splitlines()[:2]
    assert header.split()[3] == "PRIORITY"
    assert row.split()[3] == "42"
    high = row.split()[0]
    code, out, _ = run(capsys, "list", "--db", db)
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:-1]}
    assert (rows[high][3], rows[low["id"]][3]) == ("42", "-100")
    code, out, _ = run(capsys, "get", high, "--db", db)
    assert out.splitlines()[1].split()[3] == "42"


def test_enqueue_with_a_unique_key_shows_the_holder_of_a_duplicate(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--unique-key KEY`: the second enqueue stores nothing and shows the first job,
    saying so; `jobs list` and `jobs get` show the key in its UNIQUE_KEY column."""
    code, out, _ = run(capsys, "enqueue", "report", "--unique-key", "day:1", "--db", db, "--json")
    assert code == 0
    first = json.loads(out)
    assert first["unique_key"] == "day:1"
    code, out, _ = run(capsys, "enqueue", "report", '{"n": 2}', "--unique-key", "day:1", "--db", db)
    assert code == 0
    header, row, note = out.splitlines()[:2] + out.splitlines()[-1:]
    assert header.split()[4] == "UNIQUE_KEY"
    assert row.split()[:5] == [first["id"], "report", "pending", "0", "day:1"]
    assert note == "duplicate: nothing stored; this job holds the unique key"
    code, out, _ = run(capsys, "enqueue", "report", "--unique-key", "day:1", "--db", db, "--json")
    assert json.loads(out) == first
    code, out, _ = run(capsys, "enqueue", "report", "--db", db)
    assert out.splitlines()[1].split()[4] == "-"
    assert "duplicate" not in out
    code, out, _ = run(capsys, "list", "--db", db)
    assert "1-2 of 2" in out
    code, out, _ = run(capsys, "get", first["id"], "--db", db)
    assert out.splitlines()[1].split()[4] == "day:1"
    code, _, err = run(capsys, "enqueue", "report", "--unique-key", "", "--db", db)
    assert code != 0
    assert "unique_key must not be empty" in err


@pytest.mark.parametrize(
    ("priority", "message"),
    [("101", "priority must be between -100 and 100, got 101"), ("-101", "got -101")],
)
def test_a_priority_out_of_range_is_refused(
    db: str, capsys: pytest.CaptureFixture[str], priority: str, message: str
) -> None:
    assert run(capsys, "enqueue", "ok", "--priority", "100", "--db", db)[0] == 0
    code, _, err = run(capsys, "enqueue", "ok", "--priority", priority, "--db", db)
    assert code == 1
    assert message in err
    _, out, _ = run(capsys, "stats", "--db", db, "--json")
    assert json.loads(out)["total"] == 1


def test_a_priority_that_is_no_integer_is_a_usage_error(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["enqueue", "ok", "--priority", "1.5", "--db", db])
    assert exited.value.code == 2
    assert "--priority: invalid int value: '1.5'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["enqueue", "bad topic"],
        ["enqueue", "ok", "{not json"],
        ["enqueue", "ok", "NaN"],
        ["enqueue", "ok", "--run-at", "yesterday"],
        ["enqueue", "ok", "--max-retries", "1000"],
        ["list", "--limit", "0"],
        ["get", "missing"],
    ],
)
def test_errors_exit_1_with_a_message(
    db: str, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, _, err = run(capsys, *argv, "--db", db)
    assert code == 1
    assert err.startswith("jobs: error: ")
    assert "Traceback" not in err


def test_unknown_store_scheme(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "stats", "--db", "nosuchdb://x")
    assert code == 1
    assert "no installed store" in err


def test_default_db_is_jobs_data_in_cwd(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, "enqueue", "ok")
    assert code == 0
    assert (Path("jobs_data") / "jobs.db").exists()


def test_load_app_setup_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "myhandlers.py").write_text(
        "def setup(jobs):\n    jobs.register('hello', lambda job: None)\n"
    )
    jobs = build_jobs("memory://", "myhandlers:setup")
    assert jobs.topics == {"hello"}


def test_example_app_registers_its_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    jobs = build_jobs("memory://", "examples.app:setup")
    assert jobs.topics == {"send_email", "flaky"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nocolon", "module:attribute"),
        ("no_such_module_xyz:setup", "cannot import"),
        ("examples.app:nope", "no attribute"),
        ("examples.app:logger", "must be a function"),
    ],
)
def test_bad_app_spec(spec: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    load = build_jobs if message == "must be a function" else lambda _, s: load_app(s)
    with pytest.raises(AppLoadError, match=message):
        load("memory://", spec)


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in (
        *("serve", "enqueue", "list", "stats", "requeue", "cancel", "delete"),
        *("topics", "pause", "resume", "limit", "schedules"),
    ):
        assert command in out


def test_topics_pause_resume_and_limit(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`jobs topics` lists counts, pause state and limit; `pause`, `resume` and `limit`
    store them for every worker and print the topic as it now stands."""
    run(capsys, "enqueue", "mail", "{}", "--db", db)
    run(capsys, "enqueue", "mail", "{}", "--db", db)
    code, out, _ = run(capsys, "topics", "--db", db)
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == [
        "TOPIC",
        "PAUSED",
        "LIMIT",
        *(s.upper() for s in ("pending", "processing", "completed", "failed", "cancelled")),
    ]
    assert row.split() == ["mail", "none", "2", "0", "0", "0", "0"]

    code, out, _ = run(capsys, "pause", "mail", "--db", db)
    assert (code, out.splitlines()[1].split()[:3]) == (0, ["mail", "paused", "none"])
    code, out, _ = run(capsys, "limit", "mail", "3", "--db", db, "--json")
    (item,) = json.loads(out)["items"]
    assert (item["paused"], item["max_running"], item["counts"]["pending"]) == (True, 3, 2)
    code, out, _ = run(capsys, "resume", "mail", "--db", db)
    assert out.splitlines()[1].split()[:3] == ["mail", "3", "2"]
    code, out, _ = run(capsys, "limit", "mail", "none", "--db", db, "--json")
    (item,) = json.loads(out)["items"]
    assert (item["paused"], item["max_running"]) == (False, None)

    with pytest.raises(SystemExit) as exit_info:
        main(["limit", "mail", "-1", "--db", db])
    assert exit_info.value.code == 2
    assert "must be 0 or more, or 'none'" in capsys.readouterr().err
    code, out, _ = run(capsys, "topics", "--db", f"sqlite:///{Path(db[10:]).parent / 'x.db'}")
    assert code == 1  # read-only: no jobs table, nothing created
    run(capsys, "limit", "empty", "0", "--db", db)
    code, out, _ = run(capsys, "topics", "--db", db, "--json")
    assert [item["topic"] for item in json.loads(out)["items"]] == ["empty", "mail"]


def test_schedules_lists_timing_next_fire_time_and_last_job(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`jobs schedules` shows each stored schedule (read-only: nothing created)."""
    code, out, _ = run(capsys, "schedules", "--db", f"sqlite:///{Path(db[10:]).parent / 'x.db'}")
    assert code == 1  # no jobs table, nothing created
    jobs = Jobs(open_store(db))

    async def store() -> None:
        await jobs.schedule("nightly", topic="report", cron="0 3 * * *", timezone="Europe/Paris")
        await jobs.schedule("tick", topic="t", every=timedelta(seconds=30))
        await jobs.pause_schedule("tick")
        await jobs.aclose()

    asyncio.run(store())
    code, out, _ = run(capsys, "schedules", "--db", db)
    assert code == 0
    header, nightly, tick = out.splitlines()
    assert header.split() == [
        "NAME",
        "TOPIC",
        "TIMING",
        "PAUSED",
        "NEXT_FIRE_AT",
        "LAST_FIRED_AT",
        "LAST_JOB",
    ]
    assert nightly.split()[:8] == ["nightly", "report", "0", "3", "*", "*", "*", "(Europe/Paris)"]
    assert nightly.split()[8].endswith("Z")
    assert nightly.split()[9:] == ["-", "-"]
    assert tick.split()[:5] == ["tick", "t", "every", "30s", "paused"]
    code, out, _ = run(capsys, "schedules", "--db", db, "--json")
    items = json.loads(out)["items"]
    assert [(i["name"], i["paused"], i["every"]) for i in items] == [
        ("nightly", False, None),
        ("tick", True, 30.0),
    ]
