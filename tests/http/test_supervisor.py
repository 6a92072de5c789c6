"""The `--processes` supervisor on its own: its restart pause, a crash loop, and the
exit code when a child does not stop cleanly."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from jobs_http import _supervisor
from jobs_http._supervisor import Supervisor, restart_delay


def test_the_restart_pause_doubles_up_to_a_cap() -> None:
    assert [restart_delay(n) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert restart_delay(10_000) == 30


async def _until(predicate: object, timeout: float = 30) -> None:
    """Real processes take real time: poll `predicate` until it holds."""
    assert callable(predicate)
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def test_a_crash_loop_waits_longer_each_time(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_supervisor, "RESTART_DELAY", 0.01)
    supervisor = Supervisor([sys.executable, "-c", "raise SystemExit(3)"], 1)
    running = asyncio.create_task(supervisor.run())

    def pauses() -> list[float]:
        found = (
            re.search(r"exited with 3; starting another in (\S+)s", r.getMessage())
            for r in caplog.records
        )
        return [float(match.group(1)) for match in found if match]

    await _until(lambda: len(pauses()) >= 3)
    supervisor.stop()
    assert await asyncio.wait_for(running, timeout=30) == 0  # no child was running
    assert pauses()[:3] == [0.01, 0.02, 0.04]


async def test_a_child_that_does_not_stop_cleanly_makes_it_exit_1(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    child = (
        "import pathlib, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(5))\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(60)\n"
    )
    supervisor = Supervisor([sys.executable, "-c", child], 2)
    running = asyncio.create_task(supervisor.run())
    await _until(ready.exists)
    await _until(lambda: len(supervisor.pids) == 2)
    supervisor.stop()
    assert await asyncio.wait_for(running, timeout=30) == 1
    assert supervisor.pids == []


async def test_a_child_ended_by_the_signal_itself_stopped_cleanly(tmp_path: Path) -> None:
    """A child that had no handler yet (not working yet) dies of the passed-on SIGTERM."""
    ready = tmp_path / "ready"
    child = f"import pathlib, time\npathlib.Path({str(ready)!r}).touch()\ntime.sleep(60)\n"
    supervisor = Supervisor([sys.executable, "-c", child], 1)
    running = asyncio.create_task(supervisor.run())
    await _until(ready.exists)
    supervisor.stop()
    assert await asyncio.wait_for(running, timeout=30) == 0


async def test_a_child_that_cannot_be_started_is_tried_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setattr(_supervisor, "RESTART_DELAY", 0.01)
    supervisor = Supervisor([str(tmp_path / "no-such-program")], 1)
    running = asyncio.create_task(supervisor.run())

    def failures() -> int:
        return sum("could not be started" in r.getMessage() for r in caplog.records)

    await _until(lambda: failures() >= 2)
    supervisor.stop()
    assert await asyncio.wait_for(running, timeout=30) == 0
