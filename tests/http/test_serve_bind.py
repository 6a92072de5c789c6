"""`jobs serve` binds its port before the worker starts: a taken port claims no job."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from tests.http.serve_process import REPO


def _jobs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobs_http", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_taken_port_fails_before_any_job_is_claimed(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    queued = _jobs("enqueue", "send_email", '{"to": "a@example.com"}', "--db", db, "--json")
    assert queued.returncode == 0, queued.stderr
    job_id = json.loads(queued.stdout)["id"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        served = _jobs(
            "serve", "--db", db, "--port", str(port), "--app", "examples.app:setup",
            "--data-dir", str(tmp_path / "data"),
        )  # fmt: skip
    assert served.returncode == 1
    assert f"jobs: error: cannot listen on 127.0.0.1:{port}: Address already in use" in (
        served.stderr
    )
    assert "worker started" not in served.stderr
    assert "superuser token:" not in served.stdout
    job = json.loads(_jobs("get", job_id, "--db", db, "--json").stdout)
    assert job["status"] == "pending"
    assert job["retries"] == 0
