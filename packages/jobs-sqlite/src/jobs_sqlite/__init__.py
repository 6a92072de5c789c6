"""Jobs SQLite store: the embedded default, one file safe across processes and crashes.

`SQLiteStore("jobs.db")` or `jobs_core.open_store("sqlite:///jobs.db")`.
"""

from jobs_sqlite._engine import DEFAULT_BUSY_TIMEOUT, configure_engine, create_engine
from jobs_sqlite._migrations import MIGRATIONS, Migration, rebuild_table
from jobs_sqlite._schema import (
    SCHEMA_VERSION,
    create_schema,
    jobs_table,
    metadata,
    schema_table,
    version_table,
)
from jobs_sqlite._store import LOOP_ROWS, SQLiteStore

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "LOOP_ROWS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Migration",
    "SQLiteStore",
    "configure_engine",
    "create_engine",
    "create_schema",
    "jobs_table",
    "metadata",
    "rebuild_table",
    "schema_table",
    "version_table",
]
