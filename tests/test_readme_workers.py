"""The READMEs' library workers (`await jobs.run()`) as real processes: SIGTERM stops
them gracefully and leaves no job `processing`, on a SQLite file and on PostgreSQL.

Each README's block is run as written but for its store URL, which points at the test's
database; the only thing added is a `hold` topic (registered on whichever `Jobs` the
block runs) whose jobs take 3 s, so that SIGTERM comes while a full pool of them runs.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs_core import JobStatus
from tests.http.worker_process import enqueue, statuses, wait_for
from tests.pg_admin import throwaway_database

ROOT = Path(__file__).resolve().parents[1]
READMES = {
    "root": ROOT / "README.md",
    "core": ROOT / "packages" / "jobs-core" / "README.md",
    "sqlite": ROOT / "packages" / "jobs-sqlite" / "README.md",
    "postgres": ROOT / "packages" / "jobs-postgres" / "README.md",
}
#: Jobs one worker runs at once by default (`JobsConfig.worker_pool_size`).
POOL = 10

_HOLD = """
import asyncio as _asyncio
import jobs_core as _jobs_core

_run = _jobs_core.Jobs.run


async def _hold(job):
    await _asyncio.sleep(3)


async def _run_with_hold(self, **options):
    self.register("hold", _hold)
    await _run(self, **options)


_jobs_core.Jobs.run = _run_with_hold
"""


def worker_block(readme: Path) -> str:
    """The README's (first) Python block that runs a worker with `jobs.run()`."""
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.DOTALL)
    found = [block for block in blocks if "await jobs.run()" in block]
    assert found, f"{readme} has no worker example using `await jobs.run()`"
    return str(found[0])


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    with throwaway_database("jobs_readme") as url:
        yield url


@pytest.mark.parametrize("readme", sorted(READMES))
def test_sigterm_to_the_readme_worker_leaves_nothing_processing(
    readme: str, store_url: str, tmp_path: Path
) -> None:
    block = worker_block(READMES[readme])
    code, replaced = re.subn(r'open_store\("[^"]+"\)', f"open_store({store_url!r})", block)
    assert replaced == 1, block
    script = tmp_path / "worker.py"
    script.write_text(_HOLD + code)
    held = enqueue(store_url, ["hold"] * (POOL + 2))
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, str(script)], stdout=out, stderr=out, cwd=ROOT)
        try:
            wait_for(
                lambda: Counter(statuses(store_url).values())[JobStatus.PROCESSING] == POOL,
                what="a full pool of hold jobs running",
            )
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    after = statuses(store_url)
    assert JobStatus.PROCESSING not in after.values(), log.read_text()
    counted = Counter(after[job_id] for job_id in held)
    assert counted[JobStatus.COMPLETED] == POOL  # running at SIGTERM: waited for
    assert counted[JobStatus.PENDING] == 2  # never claimed: claiming stopped
