"""Jobs on PostgreSQL: `FOR UPDATE SKIP LOCKED` claims and LISTEN/NOTIFY wake-up.

`jobs_core.open_store("postgresql://user@host/db")` finds `PostgresStore` through the
`jobs_core.stores` entry point; construct it directly for the keyword options.
"""

from jobs_postgres._migrations import SCHEMA_VERSION
from jobs_postgres._store import PostgresStore

__all__ = ["SCHEMA_VERSION", "PostgresStore"]
