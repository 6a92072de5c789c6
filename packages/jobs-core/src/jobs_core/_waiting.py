"""Waiting on the `Jobs` clock: the one helper every background loop sleeps with."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

from jobs_core.clock import Clock


async def wait_until(clock: Clock, delay: timedelta, awaitable: Awaitable[Any]) -> None:
    """Wait for `awaitable` or `delay` of clock time, whichever comes first.

    On timeout, `awaitable` is left running if it is a future (callers decide). Its own
    exception propagates.
    """
    owned = not isinstance(awaitable, asyncio.Future)  # we wrapped it, so we clean it up
    work = asyncio.ensure_future(awaitable)
    timer = asyncio.ensure_future(clock.sleep(delay))
    try:
        await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        if owned and not work.done():
            work.cancel()
    if work.done():
        work.result()
