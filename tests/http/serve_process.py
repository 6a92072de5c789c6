"""Run `jobs serve` as a real subprocess on a free port, for end-to-end tests."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServeProcess:
    """`python -m jobs_http serve ...` with its stdout lines collected by a thread."""

    def __init__(
        self,
        db: str,
        data_dir: Path,
        *extra: str,
        prefix: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / "serve.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        base_env = {k: v for k, v in os.environ.items() if k != "JOBS_SUPERUSER_TOKEN"}
        self._log_file = self.log.open("ab")
        self.proc = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "jobs_http",
                "serve",
                "--db",
                db,
                "--port",
                str(self.port),
                "--app",
                "examples.app:setup",
                "--data-dir",
                str(data_dir),
                *extra,
            ],
            cwd=REPO,
            env={**base_env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line)
            self.lines.put(line)

    def wait_banner(self, timeout: float = 30) -> list[str]:
        """The banner lines, once the server listens."""
        deadline = time.monotonic() + timeout
        got: list[str] = []
        while not any(line.startswith("superuser token:") for line in got):
            remaining = deadline - time.monotonic()
            try:
                got.append(self.lines.get(timeout=max(remaining, 0.01)))
            except queue.Empty:
                self.stop()
                raise AssertionError(
                    f"jobs serve printed no banner in {timeout}s; log:\n{self.log.read_text()}"
                ) from None
        return got

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    def terminate(self, timeout: float = 60, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self._log_file.close()
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log_file.close()


def wait_status(client: httpx.Client, job_id: str, status: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] == status or time.monotonic() > deadline:
            assert job["status"] == status, job
            return job
        time.sleep(0.05)
