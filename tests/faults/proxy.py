"""A TCP proxy in front of PostgreSQL that the test can take down and bring back.

From a client's point of view, `down()` is a server crash (every connection is reset
and new ones are refused) and `up()` is the server accepting connections again. The
real server keeps running, so other tests on it are not disturbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class TcpProxy:
    """Forwards `listen_host`:`port` to `target`, on its own thread and event loop."""

    def __init__(
        self,
        target_host: str = "127.0.0.1",
        target_port: int = 5432,
        *,
        listen_host: str = "127.0.0.1",
    ) -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = free_port(listen_host)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()

    def _run(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(30)

    def up(self) -> None:
        """Accept connections (again)."""
        self._run(self._start())

    def down(self) -> None:
        """Refuse new connections and reset every open one."""
        self._run(self._stop())

    def close(self) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def is_up(self) -> bool:
        return self._server is not None

    def url(self, database_url: str) -> str:
        """`database_url` pointing at the proxy instead of the server."""
        host, port = self.target
        return database_url.replace(f"{host}:{port}", f"{self.listen_host}:{self.port}")

    async def _start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, self.listen_host, self.port, reuse_address=True
            )

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        pair = (client_w.transport, server_w.transport)
        self._transports.update(pair)
        await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))
        for transport in pair:
            self._transports.discard(transport)
            transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    with contextlib.suppress(Exception):
        writer.transport.abort()


@contextlib.contextmanager
def proxy() -> Iterator[TcpProxy]:
    """A running proxy to the local PostgreSQL, closed afterwards."""
    p = TcpProxy()
    p.up()
    try:
        yield p
    finally:
        p.close()
