"""`jobs worker` as real processes on a SQLite file and on PostgreSQL: SIGTERM stops
it gracefully and leaves no job `processing`; `--processes N` replaces a killed child
and stops every child on SIGTERM; `--topics` and `--concurrency` bound what it claims."""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs_core import JobStatus
from jobs_http.__main__ import main
from jobs_http._cli import build_parser
from jobs_http._worker_command import child_command
from tests.pg_admin import throwaway_database

from .worker_process import WorkerProcess, enqueue, statuses, wait_for

INSTANCE = "tests.http.worker_app:jobs"  # its own short shutdown grace
SETUP = "tests.http.worker_app:setup"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    with throwaway_database("jobs_worker") as url:
        yield url


def _counts(db: str) -> Counter[JobStatus]:
    return Counter(statuses(db).values())


def test_sigterm_stops_gracefully_and_leaves_nothing_processing(db: str, tmp_path: Path) -> None:
    ids = enqueue(db, ["hold", "hold", "hold_in_thread", "linger"])  # the pool is 4
    worker = WorkerProcess(db, tmp_path / "worker.log", "--app", INSTANCE)
    try:
        wait_for(lambda: _counts(db)[JobStatus.PENDING] == 0, what="every job claimed")
        code = worker.terminate()
    finally:
        worker.kill()
    assert code == 0, worker.text()
    after = statuses(db)
    assert JobStatus.PROCESSING not in after.values()
    assert [after[i] for i in ids[:3]] == [JobStatus.PENDING] * 3  # handed back
    assert after[ids[3]] is JobStatus.COMPLETED  # waited for, if it still ran
    assert "worker stopped" in worker.text()


def test_sigint_stops_it_the_same_way(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    enqueue(db, ["hold"])
    worker = WorkerProcess(db, tmp_path / "worker.log", "--app", INSTANCE)
    try:
        wait_for(lambda: _counts(db)[JobStatus.PROCESSING] == 1, what="the job claimed")
        code = worker.terminate(signal.SIGINT)
    finally:
        worker.kill()
    assert code == 0, worker.text()
    assert set(statuses(db).values()) == {JobStatus.PENDING}


def test_topics_and_concurrency_bound_the_claims(tmp_path: Path) -> None:
    """Only `--topics` are claimed, `--concurrency` at a time; at SIGTERM the running
    ones finish (within the default grace) and the rest stay pending."""
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    slow = enqueue(db, ["slow"] * 3)
    other = enqueue(db, ["linger"])
    worker = WorkerProcess(
        db, tmp_path / "worker.log", "--app", SETUP, "--topics", "slow,hold", "--concurrency", "2"
    )
    try:
        worker.wait_log(r"worker started for topics: slow, hold \(2 at once\)")
        wait_for(lambda: _counts(db)[JobStatus.PROCESSING] == 2, what="two jobs claimed")
        code = worker.terminate()  # within the first two's 2 s
    finally:
        worker.kill()
    assert code == 0, worker.text()
    after = statuses(db)
    assert after[other[0]] is JobStatus.PENDING
    assert sorted(after[i] for i in slow) == [JobStatus.COMPLETED] * 2 + [JobStatus.PENDING], (
        worker.text()
    )


def test_child_command_repeats_the_options_but_not_the_store() -> None:
    args = build_parser().parse_args(
        [
            "worker",
            "--app",
            SETUP,
            "--db",
            "postgresql://u:secret@h/d",
            "--processes",
            "3",
            "--concurrency",
            "4",
            "--topics",
            "a,b,a",
        ]
    )
    command = child_command(args)
    assert command[1:] == [
        "-m",
        "jobs_http",
        "worker",
        "--app",
        SETUP,
        "--concurrency",
        "4",
        "--topics",
        "a,b",
    ]
    assert "secret" not in " ".join(command)


_STARTED = r"worker process (\d) started \(pid (\d+)\)"


def test_processes_replaces_a_killed_child_and_stops_all_on_sigterm(
    db: str, tmp_path: Path
) -> None:
    supervisor = WorkerProcess(db, tmp_path / "worker.log", "--app", INSTANCE, "--processes", "2")
    try:
        first = supervisor.wait_log(_STARTED, count=2)
        supervisor.wait_log(r"\] jobs_http: worker started", count=2)
        victim_slot, victim = first[0].group(1), int(first[0].group(2))
        os.kill(victim, signal.SIGKILL)
        (replaced,) = supervisor.wait_log(_STARTED, count=3)[2:]
        assert replaced.group(1) == victim_slot
        assert int(replaced.group(2)) not in {victim, int(first[1].group(2))}
        assert f"(pid {victim}) exited with -9" in supervisor.text()
        supervisor.wait_log(r"\] jobs_http: worker started", count=3)

        ids = enqueue(db, ["hold_in_thread"] * 2 + ["hold"] * 8)
        # Each of the two children runs four jobs at most: eight are claimed, two wait.
        wait_for(lambda: _counts(db)[JobStatus.PROCESSING] == 8, what="eight jobs claimed")
        children = [int(replaced.group(2)), int(first[1].group(2))]
        code = supervisor.terminate()
    finally:
        supervisor.kill()
    assert code == 0, supervisor.text()
    after = statuses(db)
    assert JobStatus.PROCESSING not in after.values()
    assert set(after) == set(ids)
    assert set(after.values()) == {JobStatus.PENDING}
    for pid in children:  # every child has exited (and was reaped by the supervisor)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert supervisor.text().count("exited with 0") == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--app", SETUP, "--topics", "hold,nope"], "--topics nope: no handler registered"),
        (["--app", INSTANCE, "--concurrency", "3"], "needs a setup(jobs) function"),
        (["--app", "tests.http.nothing_here:setup"], "cannot import"),
    ],
)
def test_bad_arguments_fail_before_any_work(
    argv: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    monkeypatch.setenv("JOBS_DB_URL", db)
    assert main(["worker", "--db", db, *argv]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--processes", "0"],
        ["--concurrency", "-1"],
        ["--concurrency", "1.5"],
        ["--topics", "a,,b"],
        [],  # --app is required
    ],
)
def test_malformed_options_are_a_usage_error(argv: list[str]) -> None:
    extra = [] if not argv else ["--app", SETUP]
    with pytest.raises(SystemExit) as exit_info:
        main(["worker", *extra, *argv])
    assert exit_info.value.code == 2
