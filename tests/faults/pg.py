"""PostgreSQL helpers of the fault tests: throw-away databases, server control, probes.

The server is expected on 127.0.0.1:5432 (or where `JOBS_TEST_PG` points: a URL of the
maintenance database). Unreachable means the test fails, with a message; never a skip.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.pg_admin import ADMIN_URL, throwaway_database


@contextmanager
def fresh_database() -> Iterator[str]:
    """URL of a new, empty database, dropped afterwards (with the server up again)."""
    with throwaway_database("jobs_fault", before_drop=ensure_running) as url:
        yield url


def is_ready() -> bool:
    """Whether the server accepts connections now."""
    try:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


def wait_ready(timeout: float = 60.0) -> float:
    """Block until the server accepts connections; the `time.time()` when it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_ready():
            return time.time()
        time.sleep(0.1)
    raise AssertionError(f"PostgreSQL did not come back within {timeout:.0f}s")


def _cluster() -> tuple[str, str]:
    versions = sorted(Path("/etc/postgresql").iterdir(), key=lambda p: p.name)
    if not versions or shutil.which("pg_ctlcluster") is None:
        pytest.fail("pg_ctlcluster and /etc/postgresql are needed to restart the server")
    return versions[-1].name, "main"


def pg_ctl(action: str, *args: str) -> None:
    """`pg_ctlcluster <version> main <action>` (start, stop, restart)."""
    version, cluster = _cluster()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, action, *args],
        check=True,
        capture_output=True,
        timeout=120,
    )


def ensure_running() -> None:
    """Start the server if a test left it stopped, and wait until it answers."""
    if is_ready():
        return
    with contextlib.suppress(subprocess.CalledProcessError):  # already starting
        pg_ctl("start")
    wait_ready()
