"""`jobs` / `python -m jobs_http`: the composition root.

This is the one place that decides which store a `Jobs` gets (`jobs_core.open_store`
on the `--db` URL, through the installed adapters' entry points) and which handlers it
has (`--app module:attribute`). Everything else receives a ready `Jobs`.

`--app` names either a function `setup(jobs: Jobs) -> None` that registers handlers
on the `Jobs` built here from `--db` (recommended: one codebase, any database), or a
ready `Jobs` instance, which is used as is (its own store; `--db` is then ignored).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from jobs_core import Jobs, JobsConfig, JobsError, JobsObserver, SchemaTooNew, open_store
from jobs_http._cli import (
    DATA_DIR,
    DB_ENV_VAR,
    MIGRATE_FAILED,
    MIGRATE_TOO_NEW,
    READ_ONLY_COMMANDS,
    build_parser,
    fail,
    prepare_sqlite_file,
    run,
    run_admin,
    run_migrate,
)
from jobs_http._environment import resolve_environment
from jobs_http._limits import ConnectionLimits
from jobs_http._metrics import JobsMetrics
from jobs_http._serve import serve
from jobs_http._settings import effective_settings, print_settings
from jobs_http._supervisor import Supervisor
from jobs_http._token import TOKEN_FILE_NAME, TokenError, resolve_token
from jobs_http._worker_command import UnknownTopics, check_topics, child_command, work


class AppLoadError(Exception):
    """`--app` does not name an importable `setup(jobs)` function or `Jobs` instance."""


def load_app(spec: str) -> object:
    """Import `module:attribute` (the working directory is importable) and return it."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise AppLoadError(f"--app must look like module:attribute, got {spec!r}")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppLoadError(f"cannot import {module_name!r}: {exc}") from exc
    target: object = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppLoadError(f"{module_name!r} has no attribute {attribute!r}") from None
    return target


def build_jobs(
    db_url: str,
    app_spec: str | None,
    *,
    create_schema: bool = True,
    observers: Sequence[JobsObserver] = (),
    config: JobsConfig | None = None,
) -> Jobs:
    """The `Jobs` of this process: `--app`'s own, or one over `--db` set up by `--app`.

    With `create_schema=False` (read-only commands) nothing is created: no folder, no
    file, no table; the store raises `SchemaMissing` instead. `config` configures the
    `Jobs` built here; an app's own `Jobs` keeps its own, so with one it is refused."""
    target = load_app(app_spec) if app_spec else None
    if isinstance(target, Jobs):
        if config is not None:
            raise AppLoadError(
                f"--app {app_spec} is a Jobs instance with its own config; --concurrency"
                " needs a setup(jobs) function (or set worker_pool_size in that config)"
            )
        return target
    if target is not None and not callable(target):
        raise AppLoadError(
            f"--app {app_spec} is a {type(target).__name__};"
            " it must be a function setup(jobs) or a Jobs instance"
        )
    if create_schema:
        prepare_sqlite_file(db_url)  # ./jobs_data (0700) and jobs.db (0600) by default
    # JOBS_* variables set the worker's settings (`JobsConfig.from_env`) unless given.
    jobs = Jobs(
        open_store(db_url, create_schema=create_schema),
        config=config if config is not None else JobsConfig.from_env(),
        observers=observers,
    )
    if target is not None:
        target(jobs)
    return jobs


_LOG = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Several worker processes may share one terminal or log: each line says whose it is.
_WORKER_LOG = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `jobs` console script; returns the exit code."""
    parser = build_parser()
    args = resolve_environment(parser.parse_args(argv), parser)
    logging.basicConfig(
        level=logging.INFO if args.command in {"serve", "worker"} else logging.WARNING,
        format=_WORKER_LOG if args.command == "worker" else _LOG,
    )
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "worker":
            return _worker(args)
        if args.command == "migrate":
            return _migrate(args)
        if args.command == "config":
            print_settings(effective_settings(parser, os.environ), sys.stdout, as_json=args.json)
            return 0
        return _admin(args)
    except (AppLoadError, TokenError, UnknownTopics, OSError) as exc:
        return fail(str(exc))
    except JobsError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:  # pragma: no cover - Ctrl-C outside the server
        return 130


def _serve(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir if args.data_dir is not None else DATA_DIR
    token = resolve_token(args.token_file or data_dir / TOKEN_FILE_NAME)
    metrics = JobsMetrics()
    jobs = build_jobs(args.db, args.app, observers=[metrics])
    limits = ConnectionLimits(
        keep_alive_timeout=args.keep_alive_timeout,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        **({"max_connections": args.max_connections} if args.max_connections else {}),
    )
    run(
        serve(
            jobs,
            host=args.host,
            port=args.port,
            token=token,
            limits=limits,
            metrics=metrics,
            metrics_token=args.metrics_token,
            run_worker=not args.no_worker,
        )
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    """`jobs worker`: work here until SIGTERM/SIGINT, or supervise `--processes` workers."""
    config = (
        None if args.concurrency is None else JobsConfig.from_env(worker_pool_size=args.concurrency)
    )
    jobs = build_jobs(args.db, args.app, config=config)  # also checks the app for children
    check_topics(jobs, args.topics)
    if args.processes is None:
        run(work(jobs, args.topics))
        return 0
    run(jobs.store.close())
    supervisor = Supervisor(
        child_command(args), args.processes, env={**os.environ, DB_ENV_VAR: args.db}
    )
    code: int = run(supervisor.run())
    return code


def _migrate(args: argparse.Namespace) -> int:
    """`jobs migrate [--check]`: its own exit codes (see `jobs migrate --help`)."""
    try:
        if not args.check:
            prepare_sqlite_file(args.db)  # a new SQLite database is private, as for serve
        store = open_store(args.db, create_schema=not args.check)
    except (JobsError, OSError) as exc:
        return fail(str(exc), MIGRATE_FAILED)

    async def go() -> int:
        try:
            return await run_migrate(store, args.db, check=args.check, out=sys.stdout)
        finally:
            await store.close()

    try:
        code: int = run(go())
    except SchemaTooNew as exc:
        return fail(str(exc), MIGRATE_TOO_NEW)
    except (JobsError, OSError) as exc:
        return fail(str(exc), MIGRATE_FAILED)
    return code


def _admin(args: argparse.Namespace) -> int:
    jobs = build_jobs(args.db, None, create_schema=args.command not in READ_ONLY_COMMANDS)

    async def go() -> None:
        try:
            await run_admin(jobs, args, sys.stdout)
        finally:
            await jobs.store.close()

    run(go())
    return 0


if __name__ == "__main__":
    sys.exit(main())
