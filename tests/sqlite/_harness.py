"""Start, watch and stop `_proc.py` processes; read their ledgers and the job table."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

SCRIPT = Path(__file__).with_name("_proc.py")


class Run(NamedTuple):
    """One handler run recorded in a ledger."""

    job_id: str
    token: str
    pid: int
    topic: str
    started: float
    locked_until: float


def spawn(*args: str | Path, log: Path | None = None) -> subprocess.Popen[str]:
    """Run `_proc.py` with `args`; stdout captured, stderr to `log` (a file: a long run
    must never block on a full pipe) or captured."""
    stderr = subprocess.PIPE if log is None else log.open("a")
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def run(*args: str | Path, timeout: float = 60) -> str:
    """Run `_proc.py` to the end; its stdout. Fails the test on a non-zero exit."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def wait_line(proc: subprocess.Popen[str], expected: str) -> None:
    """Block until the process prints `expected` (its startup handshake)."""
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != expected:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"expected {expected!r}, got {line!r}; stderr:\n{err}")


def open_schema_at_once(db: Path, count: int) -> None:
    """`count` processes open `db` (creating or migrating its schema) at the same moment:
    each starts, waits for a `go` file beside `db`, then opens it; every one must succeed."""
    go = db.with_name("go")
    procs = [spawn("schema", db, go) for _ in range(count)]
    for proc in procs:
        wait_line(proc, "ready")
    go.touch()
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert (proc.returncode, out.split()) == (0, ["ok"]), err


def stop(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """SIGTERM, wait for a clean exit; the process's stderr (if captured)."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"worker exited with {proc.returncode}:\n{err}"
    return err or ""


def until(predicate: Callable[[], bool], *, timeout: float, what: str, every: float = 0.1) -> None:
    """Poll `predicate` (reading another process's progress) until true or `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def statuses(db: Path) -> Counter[str]:
    """Jobs per status, read with a connection of our own."""
    with sqlite3.connect(db, timeout=30) as raw:
        return Counter(dict(raw.execute("SELECT status, count(*) FROM jobs GROUP BY status")))


def ledger(folder: Path) -> list[Run]:
    """Every recorded run, over all ledger files in `folder`."""
    runs = []
    for path in sorted(folder.glob("*.ledger")):
        for line in path.read_text().splitlines():
            job_id, token, pid, topic, started, lease = line.split()
            runs.append(Run(job_id, token, int(pid), topic, float(started), float(lease)))
    return runs


def bad_log_lines(stderr: str) -> list[str]:
    """Log lines that must never appear: lock errors, tracebacks, store failures."""
    needles = ("database is locked", "Traceback", "OperationalError", "store error", "ERROR")
    return [line for line in stderr.splitlines() if any(n in line for n in needles)]
