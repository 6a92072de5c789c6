"""Sessions: tests, lint, typecheck, isolated installs, fault suites, soak, benchmarks.

nox makes each session's virtualenv; uv installs exactly what `uv.lock` says into it.
"""

from __future__ import annotations

import os
import sys

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "typecheck", "tests", "isolated"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def sync(session: nox.Session, *groups: str) -> None:
    """Install the locked workspace (all packages + dev tools) into the session's venv."""
    env = {"UV_PROJECT_ENVIRONMENT": session.virtualenv.location}
    session.run_install("uv", "sync", "--locked", "--inexact", *groups, env=env, external=True)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole normal suite (everything but soak); pass pytest arguments after `--`."""
    sync(session)
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff (lint + format) and the import-linter contracts."""
    sync(session)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over packages, tests, benchmarks and this file."""
    sync(session)
    session.run(
        "mypy",
        *(session.posargs or ["packages", "tests", "benchmarks", "docs", "examples", "noxfile.py"]),
    )


@nox.session(python=PYTHON)
def isolated(session: nox.Session) -> None:
    """Install jobs-core alone: it imports, runs a job and passes its tests without
    SQLAlchemy or Litestar anywhere in the environment."""
    session.install(
        "./packages/jobs-core[testing,cron]", "pytest", "pytest-asyncio", "pytest-timeout"
    )
    session.run(
        "python",
        "-c",
        "import importlib.util as u, sys; "
        "bad = [m for m in ('sqlalchemy', 'litestar', 'asyncpg', 'jobs_sqlite', 'jobs_http')"
        " if u.find_spec(m)]; "
        "sys.exit(f'unexpectedly installed: {bad}') if bad else print('jobs-core is alone')",
    )
    session.run("python", "tests/core/isolated_check.py")
    session.run("pytest", "tests/core", "-p", "no:cacheprovider", "--rootdir", ".")


def _fault(session: nox.Session, store: str, other: str) -> None:
    sync(session)
    session.run(
        "pytest",
        f"tests/{store}",
        "tests/faults",
        "-m",
        f"fault and not fault_{other}",
        "-s",
        *session.posargs,
    )


@nox.session(name="fault-sqlite", python=PYTHON)
def fault_sqlite(session: nox.Session) -> None:
    """Crash and contention tests on SQLite files (kill -9, several processes)."""
    _fault(session, "sqlite", "postgres")


@nox.session(name="fault-postgres", python=PYTHON)
def fault_postgres(session: nox.Session) -> None:
    """Crash and database-fault tests on the local PostgreSQL (kill -9, a real restart)."""
    _fault(session, "postgres", "sqlite")


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """Long-running soak tests (opt-in; JOBS_SOAK_MINUTES, default 30, per backend)."""
    sync(session)
    session.run("pytest", "tests", "-m", "soak", "-s", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks: prints a Markdown table of figures and ratios to raw-SQL floors."""
    sync(session)
    session.run("python", "-m", "benchmarks", *session.posargs, env=dict(os.environ))
