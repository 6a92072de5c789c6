"""The shared timer behind execution timeouts, driven by a `FakeClock`."""

from __future__ import annotations

import asyncio
import functools
from datetime import datetime, timedelta

import pytest

from jobs_core._deadlines import Deadline, DeadlineTimer
from jobs_core.testing import FakeClock
from tests.core.conftest import T0, settle

SECOND = timedelta(seconds=1)


def _state(deadline: Deadline) -> tuple[bool, bool]:
    """(active, expired)."""
    return deadline.active, deadline.expired


async def test_a_deadline_fires_when_the_clock_reaches_it_not_before(clock: FakeClock) -> None:
    timer = DeadlineTimer(clock)
    fired: list[str] = []
    deadline = timer.start(10 * SECOND, lambda: fired.append("a"))
    await settle()
    assert clock.sleepers == 1
    clock.advance(10 * SECOND - timedelta(microseconds=1))
    await settle()
    assert fired == []
    assert _state(deadline) == (True, False)
    clock.advance(timedelta(microseconds=1))
    await settle()
    assert fired == ["a"]
    assert _state(deadline) == (False, True)
    assert clock.sleepers == 0  # nothing pending: no timer left sleeping


async def test_a_cancelled_deadline_never_fires_and_leaves_no_sleeper(clock: FakeClock) -> None:
    timer = DeadlineTimer(clock)
    fired: list[str] = []
    deadline = timer.start(SECOND, lambda: fired.append("a"))
    await settle()
    deadline.cancel()
    deadline.cancel()  # twice is harmless
    await settle()
    assert clock.sleepers == 0
    clock.advance(10 * SECOND)
    await settle()
    assert fired == []
    assert _state(deadline) == (False, False)


async def test_an_earlier_deadline_added_while_sleeping_fires_on_time(clock: FakeClock) -> None:
    timer = DeadlineTimer(clock)
    fired: list[str] = []
    timer.start(60 * SECOND, lambda: fired.append("late"))
    await settle()
    timer.start(5 * SECOND, lambda: fired.append("early"))
    await settle()
    assert clock.sleepers == 1  # one timer, re-armed for the earlier deadline
    clock.advance(5 * SECOND)
    await settle()
    assert fired == ["early"]
    clock.advance(55 * SECOND)
    await settle()
    assert fired == ["early", "late"]


async def test_deadlines_fire_in_order_and_cancelled_ones_are_swept(clock: FakeClock) -> None:
    timer = DeadlineTimer(clock)
    fired: list[int] = []
    deadlines = [
        timer.start(SECOND * (i + 1), functools.partial(fired.append, i)) for i in range(500)
    ]
    for deadline in deadlines[::2]:
        deadline.cancel()
    assert len(timer._heap) <= 2 * 250 + 64  # dead entries do not pile up
    await settle()
    clock.advance(1000 * SECOND)
    await settle()
    assert fired == list(range(1, 500, 2))
    assert clock.sleepers == 0


async def test_a_failing_callback_does_not_stop_the_others(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    timer = DeadlineTimer(clock)
    fired: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom")

    timer.start(SECOND, boom)
    timer.start(2 * SECOND, lambda: fired.append("b"))
    await settle()
    clock.advance(2 * SECOND)
    await settle()
    assert fired == ["b"]
    assert "a deadline callback failed" in caplog.text


async def test_close_drops_every_deadline(clock: FakeClock) -> None:
    timer = DeadlineTimer(clock)
    fired: list[str] = []
    timer.start(SECOND, lambda: fired.append("a"))
    await settle()
    timer.close()
    await settle()
    assert clock.sleepers == 0
    clock.advance(2 * SECOND)
    await settle()
    assert fired == []
    timer.start(SECOND, lambda: fired.append("b"))  # usable again
    await settle()
    clock.advance(SECOND)
    await settle()
    assert fired == ["b"]


class SteppedClock:
    """A clock whose time the test sets and whose `sleep` only yields (the timer polls):
    unlike `FakeClock`, it holds no futures, so it survives its event loop."""

    def __init__(self) -> None:
        self.time = T0

    def now(self) -> datetime:
        return self.time

    async def sleep(self, delay: timedelta) -> None:
        await asyncio.sleep(0)


@pytest.mark.parametrize("cancel_tasks", [True, False], ids=["asyncio.run", "loop.close"])
def test_a_timer_whose_loop_ended_works_on_the_next_loop(cancel_tasks: bool) -> None:
    """A `Jobs` reused across event loops keeps its timeouts: a timer task left on a
    finished loop (cancelled by `asyncio.run`, or just abandoned) is replaced."""
    clock = SteppedClock()
    timer = DeadlineTimer(clock)
    fired: list[str] = []

    async def first() -> None:
        timer.start(SECOND, lambda: fired.append("old"))
        await settle(5)  # the timer task runs on this loop, which then ends

    async def second() -> None:
        timer.start(SECOND, lambda: fired.append("new"))
        await settle(5)
        clock.time += SECOND
        await settle(5)

    if cancel_tasks:
        asyncio.run(first())
    else:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(first())
        loop.close()
    asyncio.run(second())
    assert fired == ["old", "new"]
