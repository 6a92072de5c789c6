"""Faults: connections terminated, a worker killed with SIGKILL, the server restarted.

The ledger (see `worker_proc.py`) proves nothing was lost and no job ran twice while a
lease was valid. Terminating backends touches only this run's database, so it is in
the normal suite; the kill -9 and restart tests are `fault` tests (the restart
disturbs every other user of the server: run it alone, `nox -s fault-postgres`).
"""

from __future__ import annotations

import signal
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest

from jobs_core import LOCK_EXPIRED, Jobs
from jobs_postgres import PostgresStore
from tests.pg_admin import admin_connect

from .procs import check_ledger, spawn, stop, wait_for, wait_ready, worker_options, workers

PG_CLUSTER = ("15", "main")


def _options(pg_url: str, table: str, **extra: Any) -> dict[str, Any]:
    """Short leases and polls, so rescue and recovery happen within the test."""
    timing = {"lock_duration": 2, "poll_interval": 0.2, "retry_delay": 0.1}
    return worker_options(pg_url, table, **(timing | extra))


async def _enqueue(pg_url: str, table: str, payloads: list[Any]) -> list[str]:
    store = PostgresStore(pg_url, table=table)
    maker = Jobs(store)
    jobs = [maker.prepare("t", payload) for payload in payloads]
    await store.insert(jobs)
    await store.close()
    return [job.id for job in jobs]


def _terminate_all(db: psycopg.Connection[Any]) -> int:
    row = db.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ).fetchone()
    assert row is not None
    return int(row[0])


async def test_workers_survive_every_connection_being_terminated(
    pg_url: str, table: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """pg_terminate_backend on every backend, three times mid-run: workers carry on, none lost."""
    await _enqueue(pg_url, table, [{"sleep": 0.02}] * 1000)
    options = _options(pg_url, table, pool=10, batch=10)
    log = tmp_path / "workers.log"
    with workers(2, options, log=log) as procs:
        killed = 0
        for _ in range(3):
            time.sleep(0.7)
            killed += _terminate_all(db)
        wait_for(
            db,
            f"SELECT count(*) FROM {table} WHERE status = 'completed'",
            1000,
            timeout=90,
            every=0.2,
        )
        assert [proc.poll() for proc in procs] == [None, None], "a worker process exited"
    report = check_ledger(db, table, options["ledger"])
    print(f"terminated {killed} backends; {report}")
    assert killed >= 6
    assert "reconnecting" in log.read_text()


@pytest.mark.fault
async def test_job_of_a_killed_worker_is_rescued_after_its_lease(
    pg_url: str, table: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """kill -9 mid-job: once the lease (2 s + 1 s margin) runs out another worker reruns it."""
    (job_id,) = await _enqueue(pg_url, table, [{"hang_first": True}])
    options = _options(pg_url, table, ledger_at_start=True)
    log = tmp_path / "workers.log"
    victim = spawn(options, log=log)
    wait_ready(victim)
    wait_for(db, f"SELECT count(*) FROM {options['ledger']}", 1, timeout=10)
    victim.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    victim.wait()
    rescuer = spawn(options, log=log)
    try:
        wait_ready(rescuer)
        wait_for(db, f"SELECT status FROM {table}", "completed", timeout=30)
        recovered = time.monotonic() - killed_at
    finally:
        assert stop(rescuer) == 0
    row = db.execute(f"SELECT retries, last_error FROM {table}").fetchone()
    assert row == (1, LOCK_EXPIRED)
    runs = db.execute(
        f"SELECT lock_token, started, locked_until, finished FROM {options['ledger']}"
        " ORDER BY started"
    ).fetchall()
    assert len(runs) == 2
    (first_token, _, first_lease_end, first_end), (second_token, second_start, _, end) = runs
    assert first_token != second_token
    assert first_end is None
    assert end is not None
    assert second_start >= first_lease_end, "rerun started inside the dead worker's lease"
    print(f"kill -9 -> completed elsewhere in {recovered:.1f}s (lease 3 s)")
    del job_id


def _restart_server() -> float:
    started = time.monotonic()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *PG_CLUSTER, "restart", "-m", "fast"],
        check=True,
        timeout=120,
    )
    return time.monotonic() - started


@pytest.mark.fault
async def test_workers_recover_from_a_server_restart(
    pg_url: str, table: str, tmp_path: Path
) -> None:
    """PostgreSQL restarted mid-run: no worker exits, claims resume, nothing is lost."""
    await _enqueue(pg_url, table, [{"sleep": 0.05}] * 3000)
    options = _options(pg_url, table, pool=10, batch=10)
    log = tmp_path / "workers.log"
    with workers(4, options, log=log) as procs:
        with admin_connect(pg_url) as db:  # restart mid-run: some done, most still queued
            wait_for(
                db,
                f"SELECT count(*) >= 200 FROM {table} WHERE status = 'completed'",
                True,
                timeout=60,
            )
        took = _restart_server()
        ready = time.monotonic()
        with admin_connect(pg_url) as db:
            wait_for(
                db,
                f"SELECT count(*) FROM {table} WHERE status = 'completed'",
                3000,
                timeout=120,
                every=0.2,
            )
            since_ready = time.monotonic() - ready
            row = db.execute(
                f"SELECT extract(epoch FROM min(started) - (now() - make_interval(secs => %s)))"
                f" FROM {options['ledger']} WHERE started > now() - make_interval(secs => %s)",
                (since_ready, since_ready),
            ).fetchone()
            assert row is not None
            resumed = float(cast(Decimal, row[0]))
            assert [proc.poll() for proc in procs] == [None] * 4, "a worker process exited"
    with admin_connect(pg_url) as db:
        report = check_ledger(db, table, options["ledger"])
    print(f"restart took {took:.1f}s; jobs ran again {resumed:.2f}s after it; {report}")
    assert resumed <= 10, "claims did not resume within 10 s of the server being ready"
