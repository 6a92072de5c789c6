"""Run `jobs worker` as a real subprocess, reading its log as it goes."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from jobs_core import Jobs, JobStatus, open_store

from .serve_process import REPO


class WorkerProcess:
    """`python -m jobs_http worker ...`, its stderr (the log) in a file."""

    def __init__(self, db: str, log: Path, *args: str) -> None:
        self.log = log
        self._log_file = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobs_http", "worker", *args],
            cwd=REPO,
            env={**os.environ, "JOBS_DB_URL": db},
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def text(self) -> str:
        return self.log.read_text()

    def wait_log(self, pattern: str, count: int = 1, timeout: float = 60) -> list[re.Match[str]]:
        """The first `count` matches of `pattern` in the log, once there are that many."""
        deadline = time.monotonic() + timeout
        while True:
            found = list(re.finditer(pattern, self.text()))
            if len(found) >= count:
                return found[:count]
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"no {count} x {pattern!r} in the log:\n{self.text()}")
            time.sleep(0.05)

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self._log_file.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log_file.close()


def statuses(db: str) -> dict[str, JobStatus]:
    """Every job's status, by id, read from the store at `db`."""

    async def read() -> dict[str, JobStatus]:
        async with Jobs(open_store(db)) as jobs:
            return {job.id: job.status for job in (await jobs.list(limit=500)).items}

    return asyncio.run(read())


def enqueue(db: str, topics: Sequence[str]) -> list[str]:
    """Queue one job per topic at `db`; their ids."""

    async def go() -> list[str]:
        async with Jobs(open_store(db)) as jobs:
            return [(await jobs.enqueue(topic, None)).id for topic in topics]

    return asyncio.run(go())


def wait_for(predicate: Callable[[], bool], timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)
