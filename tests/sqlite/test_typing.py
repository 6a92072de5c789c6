"""`SQLiteStore` satisfies the `JobStore` port: statically (mypy checks the assignment
below under --strict) and at run time (the Protocol is runtime-checkable)."""

from __future__ import annotations

from pathlib import Path

from jobs_core import JobStore, open_store
from jobs_sqlite import SQLiteStore


def _as_port(path: Path) -> JobStore:
    store: JobStore = SQLiteStore(path)  # mypy fails here if a method's signature drifts
    return store


async def test_sqlite_store_is_a_job_store(tmp_path: Path) -> None:
    """Both the class and what `open_store` returns pass the runtime Protocol check."""
    direct = _as_port(tmp_path / "a.db")
    via_url = open_store(f"sqlite:///{tmp_path / 'b.db'}")
    assert isinstance(direct, JobStore)
    assert isinstance(via_url, SQLiteStore)
    await direct.close()
    await via_url.close()
