"""`jobs serve` against real slow and idle sockets: deadlines and the connection cap."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.http.serve_process import ServeProcess

TOKEN = "limits-test-token-0123456789abcdef"
FAST = ("--header-timeout", "0.5", "--body-timeout", "1", "--keep-alive-timeout", "0.5")
#: Far more than any deadline above; a connection still open by then was never closed.
PATIENCE = 5.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServeProcess]:
    process = ServeProcess(
        "memory://", tmp_path / "data", *FAST, env={"JOBS_SUPERUSER_TOKEN": TOKEN}
    )
    try:
        process.wait_banner()
        yield process
    finally:
        process.stop()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes `sock` within PATIENCE (reading whatever it sends first)."""
    deadline = time.monotonic() + PATIENCE
    try:
        while time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


def _trickle(sock: socket.socket, data: bytes, pause: float = 0.2) -> bool:
    """Send `data` a byte every `pause` seconds; True if the server closed it meanwhile."""
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except (ConnectionResetError, BrokenPipeError):
            return True
        sock.settimeout(pause)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            pass
        except ConnectionResetError:
            return True
    return False


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    server: ServeProcess,
) -> None:
    with _connect(server.port) as sock:
        started = time.monotonic()
        assert _closed_by_server(sock)
        assert 0.4 <= time.monotonic() - started < 3


def test_slowloris_headers_are_cut_off(server: ServeProcess) -> None:
    head = b"GET /api/jobs/stats HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    with _connect(server.port) as sock:
        started = time.monotonic()
        assert _trickle(sock, head)
        assert time.monotonic() - started < 3


def test_a_slow_body_is_cut_off(server: ServeProcess) -> None:
    head = (
        "POST /api/jobs/enqueue HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    with _connect(server.port) as sock:
        sock.sendall(head)
        started = time.monotonic()
        assert _trickle(sock, b'{"topic": "send_email", "payload": "' + b"x" * 900)
        assert time.monotonic() - started < 4


def test_an_idle_keep_alive_connection_is_closed(server: ServeProcess) -> None:
    request = f"GET /api/jobs/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    with _connect(server.port) as sock:
        sock.sendall(request.encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        assert _closed_by_server(sock)


def test_requests_within_the_deadlines_are_served(server: ServeProcess) -> None:
    with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        for _ in range(3):  # one keep-alive connection, several requests
            assert api.get("/api/jobs/stats").status_code == 200
        enqueued = api.post("/api/jobs/enqueue", json={"topic": "send_email", "payload": {}})
        assert enqueued.status_code == 200


#: Runs the server under `ulimit -n 256`, the probe's open-file limit.
LOW_FILE_LIMIT = ("sh", "-c", 'ulimit -n 256 && exec "$@"', "sh")


def test_300_idle_connections_under_a_256_file_limit_do_not_lock_out_the_api(
    tmp_path: Path,
) -> None:
    """The probe's scenario, with the default limits: the cap evicts idle sockets."""
    process = ServeProcess(
        "memory://",
        tmp_path / "data",
        prefix=LOW_FILE_LIMIT,
        env={"JOBS_SUPERUSER_TOKEN": TOKEN},
    )
    idle: list[socket.socket] = []
    try:
        process.wait_banner()
        limits = Path(f"/proc/{process.proc.pid}/limits").read_text()
        assert re.search(r"Max open files\s+256\s+256", limits), limits
        idle = [_connect(process.port) for _ in range(300)]
        with httpx.Client(
            base_url=process.base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=PATIENCE
        ) as api:
            for _ in range(3):
                assert api.get("/api/jobs/stats").status_code == 200
        assert process.proc.poll() is None
        assert "Too many open files" not in process.log.read_text()
    finally:
        for sock in idle:
            sock.close()
        process.stop()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--header-timeout", "0"),
        ("--body-timeout", "-1"),
        ("--keep-alive-timeout", "nan"),
        ("--max-connections", "0"),
    ],
)
def test_limits_must_be_positive(option: str, value: str, tmp_path: Path) -> None:
    process = ServeProcess("memory://", tmp_path / "data", option, value)
    try:
        assert process.proc.wait(timeout=30) == 2
        assert "must be" in process.log.read_text()
    finally:
        process.stop()
