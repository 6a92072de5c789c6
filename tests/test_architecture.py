"""Import rules of DESIGN.md, checked on the source: the core depends on no adapter or
framework, adapters use only the core's public modules, and adapters are independent."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "packages"
PACKAGES = {
    "jobs_core": ROOT / "jobs-core/src/jobs_core",
    "jobs_sqlite": ROOT / "jobs-sqlite/src/jobs_sqlite",
    "jobs_postgres": ROOT / "jobs-postgres/src/jobs_postgres",
    "jobs_http": ROOT / "jobs-http/src/jobs_http",
}
PUBLIC_CORE = {"jobs_core", "jobs_core.ports", "jobs_core.clock"}
FRAMEWORKS = {"sqlalchemy", "litestar", "asyncpg", "psycopg", "uvicorn", "aiosqlite"}


def imports_of(package: str) -> list[tuple[Path, str]]:
    found = []
    for path in sorted(PACKAGES[package].rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(path, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((path, node.module))
    return found


def test_core_imports_no_adapter_and_no_framework() -> None:
    """jobs_core: stdlib, attrs, cattrs (and Hypothesis in its testing kit) only."""
    bad = [
        (p.name, m)
        for p, m in imports_of("jobs_core")
        if m.split(".")[0] in FRAMEWORKS | (set(PACKAGES) - {"jobs_core"})
    ]
    assert bad == []


@pytest.mark.parametrize("adapter", ["jobs_sqlite", "jobs_postgres", "jobs_http"])
def test_adapters_use_only_the_public_core(adapter: str) -> None:
    """No `jobs_core._private` imports, and no `jobs_core.testing` in shipped code."""
    bad = [
        (p.name, m)
        for p, m in imports_of(adapter)
        if m.startswith("jobs_core") and m not in PUBLIC_CORE
    ]
    assert bad == []


@pytest.mark.parametrize("adapter", ["jobs_sqlite", "jobs_postgres", "jobs_http"])
def test_adapters_are_independent(adapter: str) -> None:
    """No adapter imports another; jobs_http finds stores through entry points."""
    others = {"jobs_sqlite", "jobs_postgres", "jobs_http"} - {adapter}
    bad = [(p.name, m) for p, m in imports_of(adapter) if m.split(".")[0] in others]
    assert bad == []
