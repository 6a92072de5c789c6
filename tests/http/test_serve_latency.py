"""`jobs serve` sends each response without waiting on the client's delayed ACK.

A response goes out in two writes, head then body. With Nagle's algorithm on, the body
waits until the client acknowledges the head, and clients delay that ACK (Linux by up to
40 ms), so every kept-alive request pays it. asyncio turns Nagle off (`TCP_NODELAY`) only
on sockets whose protocol is `IPPROTO_TCP`, so the listener `jobs serve` binds itself
must say so.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs_http._serve import bind_listener
from tests.http.serve_process import ServeProcess

TOKEN = "latency-test-token-0123456789abcdef"
REQUESTS = 20
#: Well under the 40 ms a delayed ACK costs, well over a head and body written together.
HELD_BACK = 0.03


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServeProcess]:
    process = ServeProcess("memory://", tmp_path / "data", env={"JOBS_SUPERUSER_TOKEN": TOKEN})
    try:
        process.wait_banner()
        yield process
    finally:
        process.stop()


def _head_to_body_gap(sock: socket.socket) -> float:
    """Seconds from a stats response's head arriving to its whole body arriving."""
    request = f"GET /api/jobs/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    sock.sendall(request.encode())
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head_at = time.monotonic()
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return time.monotonic() - head_at


def test_kept_alive_responses_are_not_held_back_by_delayed_acks(server: ServeProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        gaps = [_head_to_body_gap(sock) for _ in range(REQUESTS)]
    held_back = [round(gap * 1000) for gap in gaps if gap >= HELD_BACK]
    # With Nagle on, all but the first few (Linux ACKs those at once) wait ~40 ms.
    assert len(held_back) < REQUESTS // 4, f"bodies held back (ms): {held_back}"


def test_connections_accepted_on_the_bound_listener_have_nagle_off() -> None:
    async def accepted_nodelay() -> int:
        listener = bind_listener("127.0.0.1", 0)
        nodelay: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                nodelay.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        async with server:
            port = listener.getsockname()[1]
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                return await asyncio.wait_for(nodelay, timeout=5)
            finally:
                writer.close()

    assert asyncio.run(accepted_nodelay()) != 0
