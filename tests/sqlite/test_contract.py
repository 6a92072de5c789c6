"""The jobs-core contract kit, run against `SQLiteStore` on real files."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

from hypothesis import settings

from jobs_core.ports import JobStore
from jobs_core.testing.contract import (
    JobStoreContract,
    ScheduleStoreContract,
    make_schedule_machine,
    make_state_machine,
)
from jobs_sqlite import SQLiteStore


class TestSQLiteStoreContract(JobStoreContract):
    """Example tests of the port; the `store` fixture (conftest) is a fresh file each."""


_folder = tempfile.TemporaryDirectory(prefix="jobs-sqlite-model-")
_numbers = itertools.count()


async def _fresh_store() -> JobStore:
    return SQLiteStore(Path(_folder.name) / f"model-{next(_numbers)}.db")


TestSQLiteStoreModel = make_state_machine(
    _fresh_store,
    budget=settings(max_examples=100, stateful_step_count=40, deadline=None),
).TestCase


class TestSQLiteStoreSchedules(ScheduleStoreContract):
    """The schedule examples; the `store` fixture (conftest) is a fresh file each."""


TestSQLiteScheduleModel = make_schedule_machine(
    _fresh_store, budget=settings(max_examples=15, stateful_step_count=20, deadline=None)
).TestCase
