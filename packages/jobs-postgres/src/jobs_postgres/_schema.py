"""The jobs table, its indexes and its schema version; created idempotently.

Creation is safe when many processes start at once: each takes a transaction-scoped
advisory lock keyed by the table's qualified name before any DDL, checks the version
row, and creates only what is missing. A process that finds the current version
already recorded skips the DDL (and its table locks) altogether.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs_core import StoreError

log = logging.getLogger("jobs_postgres")

#: Version of the table layout this code reads and writes.
SCHEMA_VERSION: Final = 1
STATUSES: Final = ("pending", "processing", "completed", "failed")


class Schema:
    """SQLAlchemy Core objects for one jobs table (name and PostgreSQL schema configurable)."""

    def __init__(self, table: str = "jobs", schema: str | None = None) -> None:
        self.name = table
        self.schema = schema
        self.metadata = sa.MetaData(schema=schema)
        self.jobs = sa.Table(
            table,
            self.metadata,
            sa.Column("id", pg.UUID(as_uuid=False), primary_key=True),
            sa.Column("topic", sa.Text, nullable=False),
            sa.Column("payload", pg.JSONB(none_as_null=False), nullable=False),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("run_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("locked_until", sa.DateTime(timezone=True)),
            sa.Column("lock_token", sa.Text),
            sa.Column("retries", sa.Integer, nullable=False),
            sa.Column("max_retries", sa.Integer, nullable=False),
            sa.Column("last_error", sa.Text),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
            sa.CheckConstraint(
                "status IN ('pending', 'processing', 'completed', 'failed')",
                name=f"{table}_status_check",
            ),
            sa.CheckConstraint(
                "(status = 'processing') = (lock_token IS NOT NULL AND locked_until IS NOT NULL)",
                name=f"{table}_lock_check",
            ),
        )
        c = self.jobs.c
        # The claim reads this index only: one ordered walk per claimed topic over its
        # pending jobs by (run_at, id), so no plan needs to sort (see `_statements`).
        self.pending_index = sa.Index(
            f"{table}_pending_topic_idx",
            c.topic,
            c.run_at,
            c.id,
            postgresql_where=c.status == "pending",
        )
        # expired(): processing jobs by lease end.
        sa.Index(
            f"{table}_processing_idx",
            c.locked_until,
            c.id,
            postgresql_where=c.status == "processing",
        )
        # list(): newest first, optionally of one topic.
        sa.Index(f"{table}_created_idx", c.created, c.id)
        sa.Index(f"{table}_topic_created_idx", c.topic, c.created, c.id)
        self.versions = sa.Table(
            f"{table}_schema_version",
            self.metadata,
            sa.Column("version", sa.Integer, primary_key=True),
            sa.Column(
                "applied", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
            ),
        )

    @property
    def qualified(self) -> str:
        """`schema.table` (or just `table`), as used in messages and keys."""
        return f"{self.schema}.{self.name}" if self.schema else self.name

    @property
    def channel(self) -> str:
        """The NOTIFY channel of this table (at most 63 bytes, PostgreSQL's limit)."""
        return f"jobs_wake.{self.qualified}"[:63]

    @property
    def lock_key(self) -> int:
        """A stable signed 64-bit advisory-lock key for this table's DDL."""
        digest = hashlib.blake2b(f"jobs_postgres:{self.qualified}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big", signed=True)

    async def installed_version(self, conn: AsyncConnection) -> int | None:
        """The highest recorded schema version, or None when the table is not there."""
        qualified = f"{self.schema}.{self.versions.name}" if self.schema else self.versions.name
        exists = await conn.scalar(sa.select(sa.func.to_regclass(qualified)))
        if exists is None:
            return None
        version = await conn.scalar(sa.select(sa.func.max(self.versions.c.version)))
        return None if version is None else int(version)

    def pending_by_topic_ddl(self) -> list[str]:
        """Bring a table laid out by an earlier release to this claim index: the
        per-topic pending index in, the `(run_at, id)` one it replaces out.

        Plain `CREATE INDEX` (not CONCURRENTLY: it runs inside the setup transaction),
        so writers wait while it is built: a few seconds per million pending jobs.
        Idempotent; one step of the numbered migrations to come.
        """
        prefix = f'"{self.schema}".' if self.schema else ""
        index = self.pending_index
        create = sa.schema.CreateIndex(index, if_not_exists=True)
        return [
            str(create.compile(dialect=pg.dialect())),  # type: ignore[no-untyped-call]
            f'DROP INDEX IF EXISTS {prefix}"{self.name}_pending_idx"',
        ]

    async def _pending_index_present(self, conn: AsyncConnection) -> bool:
        prefix = f"{self.schema}." if self.schema else ""
        name = f"{prefix}{self.pending_index.name}"
        found = await conn.scalar(sa.select(sa.func.to_regclass(name)))
        return found is not None

    async def create(self, conn: AsyncConnection) -> None:
        """Create what is missing, in the caller's transaction, under the advisory lock."""
        found = await self.installed_version(conn)
        if found == SCHEMA_VERSION and await self._pending_index_present(conn):
            return
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(self.lock_key)))
        found = await self.installed_version(conn)
        if found is not None and found > SCHEMA_VERSION:
            raise StoreError(
                f"table {self.qualified} has schema version {found}; this jobs-postgres"
                f" understands up to {SCHEMA_VERSION}: upgrade jobs-postgres"
            )
        if found == SCHEMA_VERSION:
            # Same columns, older claim index: the version stays 1, so processes still
            # running the previous release keep working (their claim just sorts again).
            if not await self._pending_index_present(conn):
                for statement in self.pending_by_topic_ddl():
                    await conn.execute(sa.text(statement))
                log.info("added the per-topic claim index to %s", self.qualified)
            return
        if self.schema is not None:
            await conn.execute(sa.schema.CreateSchema(self.schema, if_not_exists=True))
        await conn.run_sync(self.metadata.create_all, checkfirst=True)
        await conn.execute(
            pg.insert(self.versions)
            .values(version=SCHEMA_VERSION)
            .on_conflict_do_nothing(index_elements=["version"])
        )
        log.info("created jobs table %s (schema version %d)", self.qualified, SCHEMA_VERSION)
