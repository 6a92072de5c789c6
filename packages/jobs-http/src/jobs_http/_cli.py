"""The `jobs` command's arguments and its sub-commands, each over a ready `Jobs`.

Which store and which handlers a `Jobs` gets is decided in `__main__` (the composition
root); this module parses arguments, runs a command and prints the answer, as a table
for people or as JSON (`--json`) for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs
from litestar.serialization import encode_json

from jobs_core import (
    BULK_MAX,
    MAX_PRIORITY,
    MIN_PRIORITY,
    EnqueueOptions,
    Jobs,
    JobStatus,
    MigratableStore,
    SchemaTooNew,
    TopicInfo,
)
from jobs_http._environment import defaults_from_environment
from jobs_http._schedules import ScheduleOut, SchedulesOut
from jobs_http._wire import (
    InvalidBody,
    JobOut,
    JobPageOut,
    StatsOut,
    TopicOut,
    TopicsOut,
    loads_strict,
    parse_rfc3339,
)
from jobs_http._worker_command import add_worker_parser

DATA_DIR = Path("jobs_data")
#: The variable `--db` reads (see `_environment`); `jobs worker --processes` hands its
#: children the store URL in it, out of sight of `ps`.
DB_ENV_VAR = "JOBS_DB"
DEFAULT_DB = "sqlite:///jobs_data/jobs.db"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090
#: Commands that only read: they open the store without creating its file or table,
#: so a mistyped `--db` fails ("no jobs table at ...") instead of showing an empty queue.
READ_ONLY_COMMANDS = frozenset({"stats", "list", "get", "topics", "schedules"})

#: Exit codes of `jobs migrate` (2 is argparse's: a bad command line).
MIGRATE_OK = 0
#: `--check` only: the schema is missing or older than this release; `jobs migrate` fixes it.
MIGRATE_BEHIND = 1
#: The database's schema is newer than this release: upgrade the jobs packages.
MIGRATE_TOO_NEW = 3
#: The store could not be opened, reached or migrated; the message says why.
MIGRATE_FAILED = 4

_MIGRATE_EPILOG = f"""\
Stores create and upgrade their schema on first use anyway; this is for operators who
migrate before deploying, or check that it was done. Prints one line, e.g.
  jobs schema at postgresql://jobs@db/jobs: version 1 -> 2 (latest 2)
(URLs are shown without their password). Stores without a schema (memory://) have
nothing to migrate.

exit codes:
  {MIGRATE_OK}  up to date (or migrated)
  {MIGRATE_BEHIND}  --check: behind (no schema, or an older one): run `jobs migrate`
  2  bad command line
  {MIGRATE_TOO_NEW}  the database is newer than this release: upgrade the jobs packages
  {MIGRATE_FAILED}  the store could not be opened, reached or migrated
"""


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """Arguments of `jobs` and its sub-commands; each option's default may come from its
    `JOBS_*` variable in `environ` (default `os.environ`, see `_environment`)."""
    parser = argparse.ArgumentParser(
        prog="jobs",
        description="Jobs: a persistent background job queue (service and admin commands).",
        epilog="`jobs COMMAND --help` describes each command.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db_parent = argparse.ArgumentParser(add_help=False)
    db_parent.add_argument(
        "--db",
        default=DEFAULT_DB,
        metavar="URL",
        help=f"store URL (default {DEFAULT_DB}); e.g. postgresql://user@host/db, memory://",
    )
    out_parent = argparse.ArgumentParser(add_help=False)
    out_parent.add_argument("--json", action="store_true", help="print JSON instead of a table")

    serve = commands.add_parser(
        "serve", parents=[db_parent], help="run the API, the admin UI and the workers"
    )
    serve.add_argument(
        "--host", default=DEFAULT_HOST, help=f"bind address (default {DEFAULT_HOST})"
    )
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"(default {DEFAULT_PORT})")
    serve.add_argument(
        "--app",
        metavar="MODULE:ATTRIBUTE",
        help="your handlers: a function setup(jobs) that registers them (or a Jobs instance)",
    )
    serve.add_argument(
        "--data-dir",
        type=Path,
        default=DATA_DIR,
        help="folder for the generated token (default ./jobs_data)",
    )
    serve.add_argument(
        "--token-file",
        type=Path,
        help="superuser token file (default <data dir>/superuser_token)",
    )
    serve.add_argument(
        "--keep-alive-timeout",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="close a connection idle this long after a response (default 5)",
    )
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="serve the API and the admin UI only; run workers with `jobs worker`",
    )
    serve.add_argument(
        "--header-timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="close a connection whose request line and headers take longer (default 10)",
    )
    serve.add_argument(
        "--body-timeout",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="close a connection whose request body takes longer in all (default 60)",
    )
    serve.add_argument(
        "--metrics-token",
        metavar="TOKEN",
        help="a second token that may read /metrics only, for a scraper"
        " (default: only the superuser token; prefer $JOBS_METRICS_TOKEN to the command line)",
    )
    serve.add_argument(
        "--max-connections",
        type=_positive_int,
        metavar="N",
        help="open connections at most; beyond, the longest-idle one is closed"
        " (default 1000, or a third of the open-file limit if lower)",
    )

    add_worker_parser(commands, db_parent)

    enqueue = commands.add_parser("enqueue", parents=[db_parent, out_parent], help="queue a job")
    enqueue.add_argument("topic")
    enqueue.add_argument("payload", nargs="?", default="null", help="JSON (default null)")
    enqueue.add_argument("--run-at", help="RFC 3339 time with offset, e.g. 2030-01-01T00:00:00Z")
    enqueue.add_argument("--max-retries", type=int)
    enqueue.add_argument(
        "--priority",
        type=int,
        help=f"{MIN_PRIORITY} to {MAX_PRIORITY}, larger runs first (default 0)",
    )
    enqueue.add_argument(
        "--unique-key",
        metavar="KEY",
        help="while a pending or processing job of the topic holds KEY, store nothing and"
        " show that job (1 to 255 characters)",
    )

    listing = commands.add_parser("list", parents=[db_parent, out_parent], help="list jobs")
    listing.add_argument("--topic")
    listing.add_argument("--status", choices=[status.value for status in JobStatus])
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--offset", type=int, default=0)

    commands.add_parser("stats", parents=[db_parent, out_parent], help="counts per status")

    get = commands.add_parser(
        "get",
        parents=[db_parent, out_parent],
        help="show one job, with its result and its failed attempts",
    )
    get.add_argument("id")
    get.add_argument(
        "--traceback",
        action="store_true",
        help="print each failed attempt's traceback in full (--json always has them)",
    )
    requeue = commands.add_parser(
        "requeue", parents=[db_parent, out_parent], help="requeue a failed or cancelled job"
    )
    requeue.add_argument("id")
    cancel = commands.add_parser(
        "cancel",
        parents=[db_parent, out_parent],
        help="cancel a pending job, or ask a processing job's worker to stop it",
    )
    cancel.add_argument("id")
    remove = commands.add_parser(
        "delete",
        parents=[db_parent, out_parent],
        help="delete a pending, failed or cancelled job",
    )
    remove.add_argument("id")

    bulk = commands.add_parser(
        "bulk",
        parents=[db_parent, out_parent],
        help="requeue, delete or cancel many jobs: --id ... or a filter (skips illegal ones)",
    )
    bulk.add_argument("action", choices=["requeue", "delete", "cancel"])
    bulk.add_argument("--id", dest="ids", action="append", metavar="ID", help="(repeatable)")
    bulk.add_argument("--topic")
    bulk.add_argument("--status", choices=[status.value for status in JobStatus])
    bulk.add_argument("--before", metavar="TIME", help="last changed before (RFC 3339)")
    bulk.add_argument("--max", type=int, dest="max_jobs", help=f"(default {BULK_MAX})")
    bulk.add_argument("--dry-run", action="store_true", help="only count the selection")

    commands.add_parser(
        "topics",
        parents=[db_parent, out_parent],
        help="each topic's counts per status, whether it is paused, and its limit",
    )
    pause = commands.add_parser(
        "pause",
        parents=[db_parent, out_parent],
        help="stop every worker claiming a topic's jobs (running ones finish)",
    )
    pause.add_argument("topic")
    resume = commands.add_parser(
        "resume", parents=[db_parent, out_parent], help="let workers claim a topic again"
    )
    resume.add_argument("topic")
    limit = commands.add_parser(
        "limit",
        parents=[db_parent, out_parent],
        help="at most N of a topic's jobs running at once across every worker (none: no limit)",
    )
    limit.add_argument("topic")
    limit.add_argument("max_running", type=_limit, metavar="N|none")

    commands.add_parser(
        "config",
        parents=[out_parent],
        help="the settings commands run with here (defaults and JOBS_* variables), no secrets",
    )
    commands.add_parser(
        "schedules",
        parents=[db_parent, out_parent],
        help="each stored schedule: its timing, next fire time and last fired job",
    )

    migrate = commands.add_parser(
        "migrate",
        parents=[db_parent],
        help="create or upgrade the database schema now (--check: only report)",
        description="Create or upgrade the --db database's jobs schema to this release's.",
        epilog=_MIGRATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    migrate.add_argument(
        "--check",
        action="store_true",
        help=f"change nothing; exit {MIGRATE_BEHIND} if the schema is behind this release",
    )
    defaults_from_environment(parser, environ)
    return parser


def prepare_sqlite_file(db_url: str) -> None:
    """Create a missing SQLite database file 0600, in folders created 0700.

    The database holds every payload, so it is private to its owner whatever the umask;
    SQLite gives its `-wal` and `-shm` files the database file's permissions. Existing
    files and folders, read-only URLs (`?mode=ro`) and other stores are left alone.
    """
    if not db_url.startswith("sqlite:///"):
        return
    location, _, query = db_url.removeprefix("sqlite:///").partition("?")
    if not location or location == ":memory:" or "mode=ro" in query.split("&"):
        return
    path = Path(location)
    missing = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # an existing database keeps its mode
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


# -- admin commands -----------------------------------------------------------------


def _limit(text: str) -> int | None:
    """A `jobs limit` count: a non-negative integer, or `none` (no limit)."""
    if text.lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a count or 'none': {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, or 'none': {text!r}")
    return value


def _print_topics(topics: Sequence[TopicOut], as_json: bool, out: TextIO) -> None:
    if as_json:
        _print_json(TopicsOut(items=list(topics)), out)
        return
    statuses = [status.value for status in JobStatus]
    rows = [
        (
            topic.topic,
            "paused" if topic.paused else "",
            "none" if topic.max_running is None else str(topic.max_running),
            *(str(topic.counts[status]) for status in statuses),
        )
        for topic in topics
    ]
    _print_table(("topic", "paused", "limit", *statuses), rows, out, empty="no topics")


async def _bulk(jobs: Jobs, args: argparse.Namespace, out: TextIO) -> None:
    """`jobs bulk ACTION`: the same selection and answer as `POST /api/jobs/bulk/ACTION`."""
    try:
        before = parse_rfc3339(args.before) if args.before is not None else None
    except (TypeError, ValueError) as exc:
        raise InvalidBody(f"--before: {exc}") from exc
    act = {"requeue": jobs.bulk_requeue, "delete": jobs.bulk_delete, "cancel": jobs.bulk_cancel}
    result = await act[args.action](
        ids=args.ids,
        topic=args.topic,
        status=args.status,
        before=before,
        max_jobs=BULK_MAX if args.max_jobs is None else args.max_jobs,
        dry_run=args.dry_run,
    )
    if args.json:
        out.write(json.dumps(attrs.asdict(result)) + "\n")
    else:
        rows = [(name, str(value)) for name, value in attrs.asdict(result).items()]
        _print_table(("metric", "value"), rows, out)


def _print_schedules(schedules: Sequence[ScheduleOut], as_json: bool, out: TextIO) -> None:
    if as_json:
        _print_json(SchedulesOut(items=list(schedules)), out)
        return
    rows = [
        (
            s.name,
            s.topic,
            s.timing if s.cron is None or s.timezone == "UTC" else f"{s.timing} ({s.timezone})",
            "paused" if s.paused else "",
            _cell(s.next_fire_at),
            _cell(s.last_fired_at),
            _cell(s.last_job_id),
        )
        for s in schedules
    ]
    header = ("name", "topic", "timing", "paused", "next_fire_at", "last_fired_at", "last_job")
    _print_table(header, rows, out, empty="no schedules")


async def run_admin(jobs: Jobs, args: argparse.Namespace, out: TextIO) -> None:
    """Run one of enqueue/list/stats/get/requeue/cancel/delete/topics/pause/resume/limit/
    schedules against `jobs`' store and print it."""
    command: str = args.command
    if command == "enqueue":
        try:
            payload = loads_strict(args.payload.encode("utf-8"))
            run_at = parse_rfc3339(args.run_at) if args.run_at is not None else None
        except (TypeError, ValueError) as exc:
            raise InvalidBody(str(exc)) from exc
        options = EnqueueOptions(
            run_at=run_at,
            max_retries=args.max_retries,
            priority=args.priority,
            unique_key=args.unique_key,
        )
        answer = await jobs.submit(args.topic, payload, options)
        _print_jobs([JobOut.from_job(answer.job)], args.json, out, single=True)
        if not answer.new and not args.json:
            out.write("duplicate: nothing stored; this job holds the unique key\n")
    elif command == "list":
        page = JobPageOut.from_page(
            await jobs.list(
                topic=args.topic, status=args.status, limit=args.limit, offset=args.offset
            )
        )
        if args.json:
            _print_json(page, out)
        else:
            _print_jobs(page.items, False, out)
            first = page.offset + 1 if page.items else page.offset
            out.write(f"{first}-{page.offset + len(page.items)} of {page.total}\n")
    elif command == "stats":
        stats = StatsOut.from_stats(await jobs.stats())
        if args.json:
            _print_json(stats, out)
        else:
            rows = [
                (field.name, _cell(getattr(stats, field.name))) for field in attrs.fields(StatsOut)
            ]
            _print_table(("metric", "value"), rows, out)
    elif command in {"get", "requeue", "cancel"}:
        act = {"get": jobs.get, "requeue": jobs.requeue, "cancel": jobs.cancel}[command]
        job = await act(args.id)
        tracebacks = getattr(args, "traceback", False)
        _print_jobs([JobOut.from_job(job)], args.json, out, single=True, tracebacks=tracebacks)
    elif command == "delete":
        await jobs.delete(args.id)
        if args.json:
            out.write(json.dumps({"deleted": args.id}) + "\n")
        else:
            out.write(f"deleted {args.id}\n")
    elif command == "bulk":
        await _bulk(jobs, args, out)
    elif command == "topics":
        _print_topics([TopicOut.from_info(i) for i in await jobs.list_topics()], args.json, out)
    elif command == "schedules":
        schedules = [ScheduleOut.from_schedule(s) for s in await jobs.schedules()]
        _print_schedules(schedules, args.json, out)
    elif command in {"pause", "resume", "limit"}:
        if command == "pause":
            await jobs.pause(args.topic)
        elif command == "resume":
            await jobs.resume(args.topic)
        else:
            await jobs.set_limit(args.topic, max_running=args.max_running)
        infos = await jobs.list_topics()
        found = [TopicOut.from_info(i) for i in infos if i.topic == args.topic]
        empty = TopicInfo(topic=args.topic, counts=dict.fromkeys(JobStatus, 0))
        _print_topics(found or [TopicOut.from_info(empty)], args.json, out)
    else:  # pragma: no cover - argparse only accepts the commands above
        raise ValueError(f"unknown command {command!r}")


# -- jobs migrate -------------------------------------------------------------------


async def run_migrate(store: object, url: str, *, check: bool, out: TextIO) -> int:
    """Report (`check`) or bring up to date `store`'s schema; print one line, return the
    exit code. Raises `SchemaTooNew` when the database is ahead of this release."""
    where = f"jobs schema at {without_password(url)}"
    if not isinstance(store, MigratableStore):
        out.write(f"{where}: none to migrate ({type(store).__name__} keeps no schema)\n")
        return MIGRATE_OK
    before = await store.schema_version()
    if before.ahead:
        assert before.current is not None
        raise SchemaTooNew(without_password(url), before.current, before.latest)
    if not before.behind:
        out.write(f"{where}: version {before.current}, up to date (latest {before.latest})\n")
        return MIGRATE_OK
    if check:
        out.write(
            f"{where}: version {_version(before.current)}, behind (latest {before.latest});"
            " run `jobs migrate` with the same --db to upgrade it\n"
        )
        return MIGRATE_BEHIND
    after = await store.migrate()
    out.write(
        f"{where}: version {_version(before.current)} -> {_version(after.current)}"
        f" (latest {after.latest})\n"
    )
    return MIGRATE_OK


def _version(number: int | None) -> str:
    return "none" if number is None else str(number)


def without_password(url: str) -> str:
    """`url` fit to print: a password in the user part or the query is left out."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    secret_query = any(key.lower() == "password" for key, _ in pairs)
    if not (at and ":" in userinfo) and not secret_query:
        return url  # untouched: urlunsplit would also drop the `//` of `memory://`
    if at:
        user = userinfo.partition(":")[0]
        parts = parts._replace(netloc=f"{user}@{host}" if user else host)
    if secret_query:
        kept = [(key, value) for key, value in pairs if key.lower() != "password"]
        parts = parts._replace(query=urlencode(kept))
    return urlunsplit(parts)


#: The table's columns; `errors` counts the failed attempts the job's history keeps.
_COLUMNS = (
    "id",
    "topic",
    "status",
    "priority",
    "unique_key",
    "retries",
    "run_at",
    "updated",
    "errors",
    "last_error",
)
#: Most characters of a payload, a result or one attempt's error shown in a table view.
_MAX_SHOWN = 2000


def _print_jobs(
    items: Sequence[JobOut],
    as_json: bool,
    out: TextIO,
    *,
    single: bool = False,
    tracebacks: bool = False,
) -> None:
    if as_json:
        _print_json(items[0] if single else list(items), out)
        return
    rows = [
        (
            job.id,
            job.topic,
            job.status.value,
            str(job.priority),
            _cell(job.unique_key, width=40),
            f"{job.retries}/{job.max_retries}",
            _cell(job.run_at),
            _cell(job.updated),
            str(len(job.errors)),
            _cell(job.last_error),
        )
        for job in items
    ]
    _print_table(_COLUMNS, rows, out)
    if single and items:
        _print_details(items[0], out, tracebacks=tracebacks)


def _print_details(job: JobOut, out: TextIO, *, tracebacks: bool) -> None:
    """What one job's table row leaves out: payload, result and the attempt history."""
    if job.cancel_requested is not None:  # still running: its worker stops it soon
        out.write(f"cancel requested: {_cell(job.cancel_requested)}\n")
    out.write(f"payload: {_json_text(job.payload)}\n")
    if job.status is JobStatus.COMPLETED:
        out.write(f"result: {_json_text(job.result)}\n")
    if not job.errors:
        return
    out.write(f"failed attempts ({len(job.errors)}, newest last):\n")
    for entry in job.errors:
        error = _cell(entry.error, width=_MAX_SHOWN)
        out.write(f"  #{entry.attempt}  {_cell(entry.at)}  {error}\n")
        if tracebacks and entry.traceback is not None:
            for line in _printable(entry.traceback).rstrip("\n").split("\n"):
                out.write(f"      {line}".rstrip() + "\n")
    if not tracebacks and any(entry.traceback is not None for entry in job.errors):
        out.write(f"(tracebacks: jobs get {job.id} --traceback)\n")


def _json_text(value: Any) -> str:
    """`value` as one line of JSON (control characters escaped), cut to `_MAX_SHOWN`."""
    return _printable(json.dumps(value, ensure_ascii=False))[:_MAX_SHOWN]


#: C0 and C1 control characters but newline and tab: a handler's error or traceback
#: could carry terminal escape sequences, which must reach the terminal as text.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _printable(text: str) -> str:
    """`text` with each control character (but newline and tab) written as `\\xNN`."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def _cell(value: Any, width: int = 60) -> str:
    if value is None:
        return "-"
    if hasattr(value, "isoformat"):
        return str(value.isoformat()).replace("+00:00", "Z")
    text = _printable(" ".join(str(value).split()))
    return text if len(text) <= width else text[: width - 3] + "..."


def _print_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO, empty: str = "no jobs"
) -> None:
    widths = [max([len(header[i]), *(len(row[i]) for row in rows)]) for i in range(len(header))]
    line = "  ".join(name.upper().ljust(widths[i]) for i, name in enumerate(header))
    out.write(line.rstrip() + "\n")
    for row in rows:
        out.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n")
    if not rows:
        out.write(f"({empty})\n")


def _print_json(value: Any, out: TextIO) -> None:
    out.write(encode_json(value).decode("utf-8") + "\n")


def run(coro: Any) -> Any:
    """Run `coro` on a fresh event loop (one per command)."""
    return asyncio.run(coro)


def fail(message: str, code: int = 1) -> int:
    """Print `jobs: error: message` to stderr and return the exit code."""
    sys.stderr.write(f"jobs: error: {message}\n")
    return code
