"""`MemoryStore` passes the store contract kit: the example suite and the model machine."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import settings

from jobs_core import JobStore, MemoryStore, open_store
from jobs_core.testing.contract import (
    JobStoreContract,
    ScheduleStoreContract,
    make_schedule_machine,
    make_state_machine,
)


class TestMemoryStoreContract(JobStoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[JobStore]:
        store = MemoryStore()
        yield store
        await store.close()


async def _fresh() -> JobStore:
    return MemoryStore()


# 300 examples of up to 60 steps: RELIABILITY.md §4.1's budget. On MemoryStore this takes a
# few seconds and reaches every targeted rule (stale reports, expiry on the last attempt,
# refused requeues and deletes), as `pytest --hypothesis-show-statistics` shows.
TestMemoryStoreModel = make_state_machine(
    _fresh, budget=settings(max_examples=300, stateful_step_count=60, deadline=None)
).TestCase


def test_open_store_finds_memory_store_by_scheme() -> None:
    """`memory://` resolves through the `jobs_core.stores` entry point."""
    assert isinstance(open_store("memory://"), MemoryStore)


def test_memory_store_satisfies_the_port() -> None:
    """Structural check at run time (mypy checks the same statically)."""
    store: JobStore = MemoryStore()
    assert isinstance(store, JobStore)


class TestMemoryStoreSchedules(ScheduleStoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[MemoryStore]:
        store = MemoryStore()
        yield store
        await store.close()


TestMemoryStoreScheduleModel = make_schedule_machine(
    MemoryStore, budget=settings(max_examples=100, stateful_step_count=40, deadline=None)
).TestCase
