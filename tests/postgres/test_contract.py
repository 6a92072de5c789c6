"""`PostgresStore` passes the store contract kit: the example suite and the model machine."""

from __future__ import annotations

import atexit
import os
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import settings

from jobs_core import JobStore
from jobs_core.testing.contract import (
    JobStoreContract,
    ScheduleStoreContract,
    make_schedule_machine,
    make_state_machine,
)
from jobs_postgres import PostgresStore
from tests.pg_admin import ADMIN_URL, admin_connect, with_database

from .conftest import fresh_table


class TestPostgresStoreContract(JobStoreContract):
    @pytest.fixture
    async def store(self, pg_url: str) -> AsyncIterator[JobStore]:
        store = PostgresStore(pg_url, table=fresh_table())
        yield store
        await store.close()


def _machine_database() -> str:
    """A database for the model machine (Hypothesis runs outside pytest's fixtures).

    Made on first use and dropped when the test process exits.
    """
    name = f"jobs_test_model_{uuid.uuid4().hex[:12]}"
    with admin_connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    atexit.register(drop)
    return with_database(ADMIN_URL, name)


_MODEL_URL: list[str] = []
_MODEL_TABLE = fresh_table()


async def _fresh() -> JobStore:
    """A store on the machine's table, emptied when the example closes it.

    One table for all examples and TRUNCATE between them: creating a table per example
    would spend most of the budget on DDL.
    """
    if not _MODEL_URL:
        _MODEL_URL.append(_machine_database())
    return _TruncatingStore(_MODEL_URL[0], table=_MODEL_TABLE)


class _TruncatingStore(PostgresStore):
    async def close(self) -> None:
        if self._engine is not None:
            async with self.engine.begin() as conn:
                t = self.table.name
                await conn.execute(sa.text(f"TRUNCATE {t}, {t}_topics, {t}_schedules"))
        await super().close()


# The normal suite runs a small budget (JOBS_PG_MODEL_EXAMPLES overrides it); the `fault`
# session runs RELIABILITY.md §4.1's full budget of 300 examples x 60 steps.
_EXAMPLES = int(os.environ.get("JOBS_PG_MODEL_EXAMPLES", "30"))

TestPostgresStoreModel = make_state_machine(
    _fresh, budget=settings(max_examples=_EXAMPLES, stateful_step_count=40, deadline=None)
).TestCase

TestPostgresStoreModelFullBudget = pytest.mark.fault(
    make_state_machine(
        _fresh, budget=settings(max_examples=300, stateful_step_count=60, deadline=None)
    ).TestCase
)


def test_store_satisfies_the_port(pg_url: str) -> None:
    """Structural check at run time (mypy checks the typed assignment statically)."""
    store: JobStore = PostgresStore(pg_url)
    assert isinstance(store, JobStore)


class TestPostgresStoreSchedules(ScheduleStoreContract):
    @pytest.fixture
    async def store(self, pg_url: str) -> AsyncIterator[PostgresStore]:
        store = PostgresStore(pg_url, table=fresh_table())
        yield store
        await store.close()


TestPostgresScheduleModel = make_schedule_machine(
    _fresh, budget=settings(max_examples=10, stateful_step_count=20, deadline=None)
).TestCase
