"""`jobs worker`: run workers without the HTTP API, in this process or in N supervised ones.

The arguments are parsed here; which store and handlers the worker gets is decided in
`__main__`, as for `jobs serve`. In one process the worker is `Jobs.run()`: it works
until SIGTERM or SIGINT, then stops gracefully. With `--processes N` this process only
supervises (`_supervisor`) N children, each a `jobs worker` with the same arguments.
The store URL reaches them through `$JOBS_DB_URL`, not their command line, so a
password in it does not show in `ps`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from jobs_core import Jobs

logger = logging.getLogger("jobs_http")

_EPILOG = """\
SIGTERM or SIGINT stops gracefully: no more claims, running jobs get the configured
shutdown grace (JobsConfig.shutdown_grace, 30 s by default) to finish, and the rest are
handed back as pending. With --processes, the supervisor passes the signal on to every
worker process and exits 0 once all of them have stopped cleanly.
"""


def add_worker_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    db_parent: argparse.ArgumentParser,
) -> None:
    """Declare `jobs worker` and its options on `commands`."""
    worker = commands.add_parser(
        "worker",
        parents=[db_parent],
        help="run the workers only (no API): until SIGTERM/SIGINT, then stop gracefully",
        description="Run workers for your handlers, without the HTTP API.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument(
        "--app",
        required=True,
        metavar="MODULE:ATTRIBUTE",
        help="your handlers: a function setup(jobs) that registers them (or a Jobs instance)",
    )
    worker.add_argument(
        "--concurrency",
        type=_count,
        metavar="N",
        help="jobs each worker process runs at once (JobsConfig.worker_pool_size, default 10)",
    )
    worker.add_argument(
        "--topics",
        type=topic_list,
        metavar="A,B",
        help="claim only these registered topics (default: every registered topic)",
    )
    worker.add_argument(
        "--processes",
        type=_count,
        metavar="N",
        help="supervise N worker processes, each restarted if it dies (default: work here)",
    )


def topic_list(text: str) -> tuple[str, ...]:
    """`--topics a,b`: distinct topic names, in the order given (whether each has a
    handler is checked once the app is loaded)."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"an empty topic name in {text!r}")
    return tuple(dict.fromkeys(names))


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


class UnknownTopics(ValueError):
    """`--topics` names a topic that `--app` registers no handler for."""


def check_topics(jobs: Jobs, topics: Sequence[str] | None) -> None:
    """Refuse `--topics` naming topics without a handler, before anything runs."""
    unknown = [topic for topic in topics or () if topic not in jobs.topics]
    if unknown:
        raise UnknownTopics(
            f"--topics {','.join(unknown)}: no handler registered for"
            f" {'it' if len(unknown) == 1 else 'them'} (registered:"
            f" {', '.join(sorted(jobs.topics)) or 'none'})"
        )


async def work(jobs: Jobs, topics: Sequence[str] | None) -> None:
    """Run `jobs`' worker in the foreground until SIGTERM/SIGINT; close the store after."""
    try:
        shown = ", ".join(topics or sorted(jobs.topics)) or "none"
        logger.info(
            "worker started for topics: %s (%d at once)", shown, jobs.config.worker_pool_size
        )
        await jobs.run(topics=topics)
        logger.info("worker stopped")
    finally:
        await jobs.store.close()


def child_command(args: argparse.Namespace) -> list[str]:
    """The command line of one supervised worker process: this one's, less `--processes`
    and `--db` (which goes by `$JOBS_DB_URL`)."""
    command = [sys.executable, "-m", "jobs_http", "worker", "--app", args.app]
    if args.concurrency is not None:
        command += ["--concurrency", str(args.concurrency)]
    if args.topics is not None:
        command += ["--topics", ",".join(args.topics)]
    return command
