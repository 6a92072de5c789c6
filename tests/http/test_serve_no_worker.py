"""`jobs serve --no-worker` serves the API and the UI only; `jobs worker` on the same
database does the work: the split deployment, as real processes."""

from __future__ import annotations

from pathlib import Path

import httpx

from .serve_process import ServeProcess, wait_status
from .worker_process import WorkerProcess


def test_the_api_without_workers_and_a_worker_without_the_api(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    server = ServeProcess(db, tmp_path / "data", "--no-worker")
    worker = None
    try:
        banner = server.wait_banner()
        token = banner[1].removeprefix("superuser token:").strip()
        # The lifespan logs the worker's start before the server listens: it did not.
        assert "worker started" not in server.log.read_text()
        assert httpx.get(f"{server.base}/api/health").json() == {"status": "ok"}
        with server.client(token) as api:
            sent = api.post("/api/jobs/enqueue", json={"topic": "send_email", "payload": {}})
            assert sent.json()["status"] == "pending"
            worker = WorkerProcess(db, tmp_path / "worker.log", "--app", "examples.app:setup")
            wait_status(api, sent.json()["id"], "completed")
        assert worker.terminate() == 0, worker.text()
        assert server.terminate() == 0
    finally:
        if worker is not None:
            worker.kill()
        server.stop()
    assert "worker started" not in server.log.read_text()
