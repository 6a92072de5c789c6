"""Start and stop worker processes, and read the ledger they write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

SCRIPT = Path(__file__).with_name("worker_proc.py")
ROOT = Path(__file__).resolve().parents[2]


def spawn(options: dict[str, Any], *, log: Path | None = None) -> subprocess.Popen[str]:
    """Start `worker_proc.py` with `options`; its log goes to `log` (or is discarded)."""
    out = open(log, "a") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), json.dumps(options)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=out,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_ready(proc: subprocess.Popen[str], timeout: float = 30.0, log: Path | None = None) -> None:
    """Block until the worker prints `ready` (its worker loop runs)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == "ready":
            return
        if not line and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
            raise AssertionError(
                f"worker exited with {proc.returncode} before it was ready; log:\n{tail}"
            )
    raise AssertionError("worker not ready in time")


def stop(proc: subprocess.Popen[str], timeout: float = 30.0) -> int:
    """SIGTERM (graceful stop) and wait; kill if it hangs. The exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@contextmanager
def workers(
    count: int, options: dict[str, Any], *, log: Path | None = None
) -> Iterator[list[subprocess.Popen[str]]]:
    """`count` running workers, stopped at the end (their exit codes are checked)."""
    procs = [spawn(options, log=log) for _ in range(count)]
    try:
        for proc in procs:
            wait_ready(proc, log=log)
        yield procs
    finally:
        codes = [stop(proc) for proc in procs]
    assert all(code in (0, -signal.SIGKILL) for code in codes), f"worker exit codes: {codes}"


def wait_for(
    conn: psycopg.Connection[Any],
    sql: str,
    expected: Any,
    *,
    timeout: float,
    every: float = 0.05,
    negate: bool = False,
) -> Any:
    """Poll `sql` until it returns `expected` (or, with `negate`, anything else).

    Compares the first column of the first row; returns that value.
    """
    deadline = time.monotonic() + timeout
    value: Any = None
    while time.monotonic() < deadline:
        row = conn.execute(sql).fetchone()
        value = row[0] if row else None
        if (value == expected) != negate:
            return value
        time.sleep(every)
    raise AssertionError(f"{sql!r} gave {value!r}, not {expected!r}, within {timeout}s")


def check_ledger(conn: psycopg.Connection[Any], table: str, ledger: str) -> dict[str, int]:
    """Assert the ledger invariants against the jobs table; return counts for reports.

    Every job completed and has a finished run. No run started while an earlier run of
    the same job was still going inside its valid lease (RELIABILITY I3; a run that ended
    early, by failing, lets its retry start before the old lease end, and that is fine).
    `finished_twice` counts jobs with more than one finished run, which faults can cause
    legitimately (a run whose success was reported but lost with the connection).
    """
    statuses = dict(conn.execute(f"SELECT status, count(*) FROM {table} GROUP BY status"))
    assert set(statuses) == {"completed"}, f"not all jobs completed: {statuses}"
    missing = conn.execute(
        f"SELECT count(*) FROM {table} j WHERE NOT EXISTS"
        f" (SELECT 1 FROM {ledger} l WHERE l.job_id = j.id AND l.finished IS NOT NULL)"
    ).fetchone()
    assert missing == (0,), f"{missing} completed jobs have no finished run"
    twice = conn.execute(
        f"SELECT job_id, count(*) FROM {ledger} WHERE finished IS NOT NULL"
        " GROUP BY job_id HAVING count(*) > 1"
    ).fetchall()
    overlaps = conn.execute(
        f"SELECT a.job_id FROM {ledger} a JOIN {ledger} b ON a.job_id = b.job_id"
        " AND a.lock_token <> b.lock_token AND a.started <= b.started"
        " AND b.started < LEAST(a.locked_until, COALESCE(a.finished, 'infinity'))"
    ).fetchall()
    assert overlaps == [], f"{len(overlaps)} attempts started inside another's valid lease"
    runs = conn.execute(f"SELECT count(*) FROM {ledger}").fetchone()
    assert runs is not None
    return {"jobs": sum(statuses.values()), "runs": runs[0], "finished_twice": len(twice)}


def worker_options(pg_url: str, table: str, **extra: Any) -> dict[str, Any]:
    """Options of a worker process on `table`, its ledger in `<table>_ledger`."""
    return {
        "store_url": f"{pg_url}?table={table}",
        "plain_url": pg_url,
        "ledger": f"{table}_ledger",
        **extra,
    }
