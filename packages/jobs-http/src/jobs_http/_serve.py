"""`jobs serve`: one process running the API, the admin UI and the worker under uvicorn.

Uvicorn turns SIGINT/SIGTERM into a graceful shutdown: it stops accepting connections,
finishes the requests in flight, then runs the app's lifespan shutdown, which stops the
worker (waiting `shutdown_grace` for running jobs, handing the rest back as `pending`).
Only then is the store closed, so no job is lost.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import uvicorn

from jobs_core import Jobs
from jobs_http._app import create_app
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


async def serve(
    jobs: Jobs,
    *,
    host: str,
    port: int,
    token: SuperuserToken,
    out: TextIO = sys.stdout,
) -> None:
    """Serve until SIGINT/SIGTERM, then stop the worker and close the store."""
    app = create_app(jobs, token=token.value)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_level="info",
        server_header=False,
        proxy_headers=False,
    )
    server = _Server(config, banner(host, port, token), out)
    try:
        await server.serve()
    finally:
        await jobs.store.close()
    if not server.started:
        raise OSError(f"could not start the server on {host}:{port} (see the log above)")
