"""The network-partition harness (`netns.py`) does what a partition does, and no more.

A client inside host 1's namespace talks to PostgreSQL through host 1's link. Cutting
the link makes its open connection and its new connections time out (silence, not a
reset or "unreachable"); a query sent during the cut is held and answered once the link
is restored, as after a real partition; host 2 works throughout.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import attrs
import pytest

from tests.faults import netns
from tests.faults.fleet import REPO
from tests.pg_admin import ADMIN_URL

SHORT = 1.0  # a timeout the cut must trip
LONG = 30.0  # a timeout a working link never trips


@attrs.define
class Probe:
    """A `netns_probe` child in one host, asked one line at a time."""

    host: netns.Host
    proc: subprocess.Popen[str]

    def ask(self, command: str, timeout: float = 60.0) -> str:
        """Send `command`, return the child's one-line answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read(timeout, command)

    def read(self, timeout: float, what: str = "start") -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise AssertionError(f"{self.host.name}: no answer to {what!r} in {timeout}s")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"{self.host.name}: probe exited ({self.proc.wait()})")
        return line.strip()


@contextmanager
def probe(host: netns.Host) -> Iterator[Probe]:
    """A probe started inside `host`, connecting to PostgreSQL by `host`'s link."""
    argv = [sys.executable, "-m", "tests.faults.netns_probe", host.url(ADMIN_URL)]
    proc = subprocess.Popen(
        host.command(argv), cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        child = Probe(host, proc)
        assert child.read(30) == "ready"
        yield child
    finally:
        proc.kill()
        proc.wait()


def _target() -> tuple[str, int]:
    parts = urlsplit(ADMIN_URL)
    return parts.hostname or "127.0.0.1", parts.port or 5432


@pytest.mark.fault
@pytest.mark.fault_postgres
@pytest.mark.timeout(120)
def test_cutting_one_hosts_link_partitions_that_host_only() -> None:
    with netns.hosts(2, target=_target()) as (one, two), probe(one) as p1, probe(two) as p2:
        assert one.address != two.address
        for name in ("idle", "held"):
            assert p1.ask(f"connect {name} {LONG}") == "ok"
            assert p1.ask(f"query {name} {LONG}") == "ok 1"
        assert p2.ask(f"connect a {LONG}") == "ok"

        one.cut()
        assert [h.is_cut for h in (one, two)] == [True, False]
        assert p1.ask(f"query idle {SHORT}") == "timeout"  # an open connection hangs
        assert p1.ask(f"connect new {SHORT}") == "timeout"  # a new one is neither refused
        assert p1.ask(f"connect new {SHORT}") == "timeout"  # nor, later, "unreachable"
        assert p1.ask("send held") == "sent"
        assert p1.ask(f"wait held {SHORT}") == "timeout"  # held on host 1's side
        assert p2.ask(f"query a {LONG}") == "ok 1"  # host 2 is not partitioned
        assert p2.ask(f"connect b {LONG}") == "ok"

        one.restore()
        assert [h.is_cut for h in (one, two)] == [False, False]
        assert p1.ask(f"wait held {LONG}") == "ok 1"  # the late query gets through
        assert p1.ask(f"connect after {LONG}") == "ok"
        assert p1.ask(f"query after {LONG}") == "ok 1"
        assert p2.ask(f"query b {LONG}") == "ok 1"


def test_stale_names_are_recognised_by_dead_pid() -> None:
    """Only `jobsf<pid>h<n>` of a pid that is gone counts as a leftover."""
    dead = _dead_pid()
    assert netns._stale(f"jobsf{dead}h1")
    assert not netns._stale(f"jobsf{os.getpid()}h1")
    assert not netns._stale(f"jobsf{dead}x1")
    assert not netns._stale("eth0")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
