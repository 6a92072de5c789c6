"""Shared helpers for core tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from jobs_core import Jobs, JobsConfig, MemoryStore
from jobs_core.testing import FakeClock

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def jobs(store: MemoryStore, clock: FakeClock) -> Jobs:
    return Jobs(store, clock=clock, config=JobsConfig(backoff=lambda n: _seconds(2**n)))


def _seconds(n: float):  # type: ignore[no-untyped-def]
    from datetime import timedelta

    return timedelta(seconds=n)


async def until(predicate: Callable[[], bool], *, rounds: int = 10_000) -> None:
    """Yield to the event loop until `predicate()` holds (no wall-clock waiting)."""
    for _ in range(rounds):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def settle(rounds: int = 50) -> None:
    """Let every runnable task take a few steps (yields only; no wall-clock waiting)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
