"""`jobs serve`: one process running the API, the admin UI and the worker under uvicorn.

Uvicorn turns SIGINT/SIGTERM into a graceful shutdown: it stops accepting connections,
finishes the requests in flight, then runs the app's lifespan shutdown, which stops the
worker (waiting `shutdown_grace` for running jobs, handing the rest back as `pending`).
Only then is the store closed, so no job is lost.

The listening socket is bound before anything else starts, so a taken port fails at
once, before the worker has claimed a single job. Connections are kept in bounds by
`_limits` (deadlines for request heads and bodies, a connection cap), and the access log
shows paths without their query strings, so a token sent as `?token=` is never written.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import uvicorn

from jobs_core import Jobs
from jobs_http._app import create_app
from jobs_http._limits import ConnectionLimits, guarded_protocol
from jobs_http._metrics import JobsMetrics
from jobs_http._token import SuperuserToken

logger = logging.getLogger("jobs_http")


class _Server(uvicorn.Server):
    """Uvicorn's server, announcing the URL (and a new token) once it really listens."""

    def __init__(self, config: uvicorn.Config, banner: str, out: TextIO) -> None:
        super().__init__(config)
        self._banner = banner
        self._out = out

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Like uvicorn's, but a signal ends `serve()` normally instead of being re-raised
        after shutdown (which would kill the process before the store is closed)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        await super().startup(sockets)  # type: ignore[arg-type]
        if self.started:
            self._out.write(self._banner)
            self._out.flush()


def banner(host: str, port: int, token: SuperuserToken) -> str:
    """What `jobs serve` prints once it listens: the UI URL and where the token is."""
    shown = f"[{host}]" if ":" in host else host
    lines = [f"Jobs running at http://{shown}:{port}/_/ (API: http://{shown}:{port}/api/jobs)"]
    if token.origin == "generated":
        lines.append(f"superuser token: {token.value}")
        lines.append(f"(generated once and saved to {token.path}; it is not shown again)")
    elif token.origin == "file":
        lines.append(f"superuser token: in {token.path}")
    else:
        lines.append("superuser token: from $JOBS_SUPERUSER_TOKEN")
    return "\n".join(lines) + "\n"


class PortUnavailable(OSError):
    """The address `jobs serve` should listen on cannot be bound (taken, or not local)."""


def bind_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host:port` (not yet listening), or `PortUnavailable`.

    The protocol is named (`IPPROTO_TCP`, not 0): asyncio turns Nagle's algorithm off
    only on such sockets, and with it on every response body waits for the client's
    delayed ACK of the head (about 40 ms per kept-alive request).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortUnavailable(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


class PathOnlyAccessLog(logging.Filter):
    """Drops the query string from uvicorn's access lines: it may hold a token."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], args[2].partition("?")[0], args[3], args[4])
        return True


async def serve(
    jobs: Jobs,
    *,
    host: str,
    port: int,
    token: SuperuserToken,
    limits: ConnectionLimits | None = None,
    out: TextIO = sys.stdout,
    metrics: JobsMetrics | None = None,
    metrics_token: str | None = None,
    run_worker: bool = True,
) -> None:
    """Serve until SIGINT/SIGTERM, then stop the worker and close the store. With
    `metrics` (an observer of `jobs`), `/metrics` serves them (see `create_app`);
    `run_worker=False` serves the API and the UI only (`jobs serve --no-worker`)."""
    limits = limits if limits is not None else ConnectionLimits()
    try:
        listener = bind_listener(host, port)  # before the lifespan starts the worker
        app = create_app(
            jobs,
            token=token.value,
            run_worker=run_worker,
            metrics=metrics,
            metrics_token=metrics_token,
        )
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="on",
            log_level="info",
            server_header=False,
            proxy_headers=False,
            http=guarded_protocol(limits),
            backlog=min(2048, limits.max_connections),
        )
        access = logging.getLogger("uvicorn.access")
        if not any(isinstance(known, PathOnlyAccessLog) for known in access.filters):
            access.addFilter(PathOnlyAccessLog())
        server = _Server(config, banner(host, port, token), out)
        await server.serve(sockets=[listener])
    finally:
        await jobs.store.close()
    if not server.started:
        raise OSError(f"could not start the server on {host}:{port} (see the log above)")
