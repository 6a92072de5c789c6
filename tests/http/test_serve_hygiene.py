"""`jobs serve` and the admin commands: what they log, the files they create, the tokens
they accept."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from jobs_http._token import TokenError, resolve_token
from tests.http.serve_process import REPO, ServeProcess

TOKEN = "hygiene-test-token-0123456789abcdef"
#: Runs a command under the usual umask, whatever the test runner's is.
UMASK_022 = ("sh", "-c", 'umask 022 && exec "$@"', "sh")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_access_log_shows_paths_without_query_strings(tmp_path: Path) -> None:
    secret = "query-string-secret-0123456789"
    server = ServeProcess("memory://", tmp_path / "data", env={"JOBS_SUPERUSER_TOKEN": TOKEN})
    try:
        server.wait_banner()
        with httpx.Client(base_url=server.base) as client:
            assert client.get(f"/api/jobs?token={secret}&limit=5").status_code == 401
            assert client.get(f"/_/?access_token={secret}").status_code == 200
        assert server.terminate() == 0
    finally:
        server.stop()
    log = server.log.read_text() + "".join(server.stdout)  # uvicorn's access log is stdout
    assert '"GET /api/jobs HTTP/1.1" 401' in log
    assert '"GET /_ HTTP/1.1" 200' in log  # Litestar drops the trailing slash
    assert secret not in log


def _jobs(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in ("JOBS_DB", "JOBS_DB_URL"):
        env.pop(name, None)
    return subprocess.run(
        [*UMASK_022, sys.executable, "-m", "jobs_http", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_default_database_is_private_when_an_admin_command_creates_it(
    tmp_path: Path,
) -> None:
    done = _jobs("enqueue", "send_email", "{}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _mode(tmp_path / "jobs_data") == 0o700
    assert _mode(tmp_path / "jobs_data" / "jobs.db") == 0o600
    for extra in ("jobs.db-wal", "jobs.db-shm"):
        if (tmp_path / "jobs_data" / extra).exists():
            assert _mode(tmp_path / "jobs_data" / extra) == 0o600


def test_a_nested_database_path_gets_private_folders(tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "jobs.db"
    done = _jobs("enqueue", "send_email", "{}", "--db", f"sqlite:///{db}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [_mode(folder) for folder in (tmp_path / "a", db.parent, db)] == [0o700, 0o700, 0o600]


def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    assert _jobs("enqueue", "t", "{}", "--db", f"sqlite:///{db}", cwd=tmp_path).returncode == 0
    db.chmod(0o640)
    assert _jobs("stats", "--db", f"sqlite:///{db}", cwd=tmp_path).returncode == 0
    assert _mode(db) == 0o640


def test_serve_with_another_data_dir_still_creates_a_private_database(tmp_path: Path) -> None:
    db = tmp_path / "work" / "jobs_data" / "jobs.db"
    db.parent.parent.mkdir()
    server = ServeProcess(f"sqlite:///{db}", tmp_path / "secret", prefix=UMASK_022)
    try:
        server.wait_banner()
        assert _mode(db.parent) == 0o700
        assert _mode(db) == 0o600
        assert server.terminate() == 0
    finally:
        server.stop()


@pytest.mark.parametrize(
    "value",
    ["pässwörd-ünïcode-tökén-1234", "token-with-emoji-0123456789-🙂", "tab\tinside-0123456789"],
)
def test_tokens_outside_visible_ascii_are_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(TokenError):
        resolve_token(tmp_path / "t", environ={"JOBS_SUPERUSER_TOKEN": value})


def test_serve_refuses_a_non_ascii_token_at_start(tmp_path: Path) -> None:
    server = ServeProcess(
        "memory://", tmp_path / "data", env={"JOBS_SUPERUSER_TOKEN": "pässwörd-ünïcode-tökén-1234"}
    )
    try:
        assert server.proc.wait(timeout=30) == 1
    finally:
        server.stop()
    assert "may only use visible ASCII characters" in server.log.read_text()
