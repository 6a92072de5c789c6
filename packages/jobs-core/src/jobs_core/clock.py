"""The `Clock` port: where the core gets the time and waits, so tests can control both."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Time source of a `Jobs` instance. Leases and `run_at` are judged by this clock."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, delay: timedelta) -> None:
        """Wait `delay` of this clock's time (a fake clock waits for `advance`)."""
        ...


class SystemClock:
    """The real wall clock and `asyncio.sleep`."""

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)

    async def sleep(self, delay: timedelta) -> None:
        """Sleep on the event loop."""
        await asyncio.sleep(max(delay.total_seconds(), 0.0))

    def __repr__(self) -> str:
        return "SystemClock()"
