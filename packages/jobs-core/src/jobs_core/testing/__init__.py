"""Test aids for code that uses Jobs, and for authors of store adapters.

`FakeClock` needs nothing beyond jobs-core. The store contract kit is in
`jobs_core.testing.contract` and needs the `jobs-core[testing]` extra (Hypothesis).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta

__all__ = ["FakeClock"]


class FakeClock:
    """A clock that moves only when told to, for tests that control time.

    `sleep` waits until `advance` has moved the clock past the sleeper's deadline, so a
    worker driven by a `FakeClock` polls, times out and backs off exactly when the test
    says, with no real waiting.
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start if start is not None else datetime(2030, 1, 1, tzinfo=UTC)
        if start.utcoffset() is None:
            raise ValueError(f"FakeClock start must be timezone-aware, got {start!r}")
        self._now = start.astimezone(UTC)
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __repr__(self) -> str:
        return f"FakeClock({self._now.isoformat()})"

    def now(self) -> datetime:
        """The fake current time."""
        return self._now

    async def sleep(self, delay: timedelta) -> None:
        """Return once the clock has been advanced by at least `delay` from now."""
        if delay <= timedelta(0):
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + delay, next(self._order), future))
        await future

    @property
    def sleepers(self) -> int:
        """How many coroutines wait in `sleep` (lets tests wait until a worker is idle)."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    def advance(self, delta: timedelta) -> datetime:
        """Move time forward by `delta` and wake every sleeper whose deadline has come."""
        if delta < timedelta(0):
            raise ValueError("a FakeClock never goes backwards")
        self._now += delta
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
        return self._now

    def set(self, when: datetime) -> datetime:
        """Move to `when` (not earlier than now)."""
        return self.advance(when - self._now)
