"""Hosts on their own network, each reaching PostgreSQL over one link the test can cut.

`hosts(n)` makes n "machines" for a network-partition test. Each one is a network
namespace whose only way out is a veth pair to the root namespace: the namespace side
(`veth0`, 10.213.x.2/30) routes everything via the root side (10.213.x.1/30), where a
`TcpProxy` of that host listens and forwards to PostgreSQL on 127.0.0.1:5432 (a
namespace cannot reach the root namespace's loopback, and the proxy gives each host a
link of its own). A process started with `host.command(argv)` runs inside the namespace
and reaches the database at `host.url(database_url)`.

`host.cut()` partitions that host: its packets are silently dropped, both ways, so its
TCP connections hang (no RST, no "unreachable") until `host.restore()`, after which
they carry on where they were, as after a real partition.

Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2, nothing else: without them
the test fails with a message when CI is set and is skipped otherwise. Every namespace,
link and address made here is removed on the way out, test failure or not; leftovers of
a process that died (namespaces `jobsf<pid>h<n>` whose pid is gone) are removed by the
next `hosts()`.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import itertools
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

import attrs
import pytest

from tests.faults.proxy import TcpProxy

PREFIX = "jobsf"
POOL = ipaddress.IPv4Network("10.213.0.0/16")
NS_LINK = "veth0"
LOCK = Path(tempfile.gettempdir()) / "jobsf-netns.lock"
STATE_TIMEOUT = 10.0

_OURS = re.compile(rf"^{PREFIX}(\d+)h(\d+)$")
_UNAVAILABLE = ("Operation not permitted", "Permission denied", "Unknown device type")
_serial = itertools.count(1)


class NetnsError(RuntimeError):
    """An `ip` command of the harness failed (its stderr is in the message)."""


class NetnsUnavailable(NetnsError):
    """This machine cannot make network namespaces (not root, no iproute2, no veth)."""


def _ip(*args: str) -> str:
    """Run `ip <args>`; its stdout, or NetnsError with its stderr."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _ip_delete(*args: str) -> None:
    """Run an `ip ... del` that may find its object gone already (that is success)."""
    try:
        _ip(*args)
    except NetnsError as exc:
        if "Cannot find" not in str(exc) and "No such file" not in str(exc):
            raise


def _operstate(link: str, namespace: str | None = None) -> str:
    """The kernel's operational state of `link` ("UP", "DOWN", "LOWERLAYERDOWN", ...)."""
    where = ["-n", namespace] if namespace else []
    out = _ip(*where, "-o", "link", "show", "dev", link)
    match = re.search(r"\bstate (\S+)", out)
    return match.group(1) if match else "UNKNOWN"


def _wait_state(link: str, namespace: str | None, *, up: bool) -> None:
    """Poll until `link` is (or is no longer) operationally up.

    The carrier of a veth's peer changes asynchronously (the kernel's link watcher), so
    `ip link set` returning is not the end of it; there is no cheap event to wait on.
    """
    deadline = time.monotonic() + STATE_TIMEOUT
    while (_operstate(link, namespace) == "UP") != up:
        if time.monotonic() > deadline:
            where = f" in {namespace}" if namespace else ""
            raise NetnsError(f"{link}{where} did not go {'up' if up else 'down'}")
        time.sleep(0.01)


@attrs.define(eq=False)
class Host:
    """One machine of a partition test: a namespace whose only link the test can cut."""

    name: str
    """"h1", "h2", ...: for messages."""
    namespace: str
    """The network namespace, `jobsf<pid>h<n>`."""
    link: str
    """The root-namespace end of the veth pair (same name as the namespace)."""
    address: str
    """The host's own address, inside the namespace."""
    gateway: str
    """The root-namespace end's address: the host's route out, where its proxy listens."""
    proxy: TcpProxy
    """Forwards `gateway`:`port` to PostgreSQL. Its server-side connections outlive a
    cut (as a server's do until TCP keepalive gives up); `proxy.down()` resets them."""
    is_cut: bool = False

    @property
    def port(self) -> int:
        return self.proxy.port

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside this host's namespace (`ip netns exec` execs it: same pid)."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def url(self, database_url: str) -> str:
        """`database_url` as this host reaches it: through its proxy, by its link."""
        parts = urlsplit(database_url)
        userinfo, _, _ = parts.netloc.rpartition("@")
        netloc = f"{userinfo}@" if userinfo else ""
        netloc += f"{self.gateway}:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def cut(self) -> None:
        """Partition this host: every packet on its link is dropped silently, both ways.

        Done by setting the root-side veth administratively down. Packets the namespace
        sends are then discarded by the veth (its peer is down) without an error to the
        sender, and nothing is sent back: connections hang, new ones time out. The other
        ways were worse: setting the namespace side down removes its routes, so a connect
        fails at once with "Network is unreachable"; `tc ... netem loss 100%` needs a
        kernel module this machine's kernel does not have. ARP would still betray the cut
        (the namespace's neighbour entry fails after a few seconds and connects then get
        "No route to host"), so `hosts()` pins the gateway's neighbour entry (`nud
        permanent`).
        """
        _ip("link", "set", "dev", self.link, "down")
        _wait_state(NS_LINK, self.namespace, up=False)
        self.is_cut = True

    def restore(self) -> None:
        """Heal the partition: the link is back up, held connections carry on."""
        _ip("link", "set", "dev", self.link, "up")
        _wait_state(self.link, None, up=True)
        _wait_state(NS_LINK, self.namespace, up=True)
        self.is_cut = False


def unavailable(reason: str) -> NoReturn:
    """Fail the test when CI is set (the harness must work there), else skip it."""
    message = (
        f"network namespaces are unavailable here ({reason}); the partition tests need"
        " root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2, as .ci/run has."
    )
    if os.environ.get("CI", "").lower() not in {"", "0", "false", "no"}:
        pytest.fail(f"{message} CI is set, so this fails instead of skipping.", pytrace=False)
    pytest.skip(message)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(name: str) -> bool:
    """Whether `name` is one of ours, made by a process that is gone."""
    match = _OURS.match(name)
    return match is not None and not _pid_alive(int(match.group(1)))


def remove_stale() -> list[str]:
    """Delete the namespaces and root-side links of harness processes that died."""
    removed = []
    for line in _ip("-o", "link", "show").splitlines():
        name = line.split(":", 2)[1].strip().split("@", 1)[0]
        if _stale(name):
            _ip_delete("link", "del", "dev", name)
            removed.append(name)
    for line in _ip("netns", "list").splitlines():
        name = line.split(" ", 1)[0]
        if _stale(name):
            _ip_delete("netns", "del", name)
            removed.append(name)
    return sorted(set(removed))


def _free_subnets(count: int) -> list[ipaddress.IPv4Network]:
    """`count` /30s of POOL that no address of the root namespace is in."""
    used = []
    for line in _ip("-4", "-o", "addr", "show").splitlines():
        fields = line.split()
        if "inet" in fields:
            used.append(ipaddress.IPv4Interface(fields[fields.index("inet") + 1]).network)
    free = (net for net in POOL.subnets(new_prefix=30) if not any(net.overlaps(u) for u in used))
    chosen = list(itertools.islice(free, count))
    if len(chosen) < count:
        raise NetnsError(f"no {count} free /30 subnets left in {POOL}")
    return chosen


@contextlib.contextmanager
def _allocation_lock() -> Iterator[None]:
    """Serialise choosing and assigning addresses across test processes on the machine."""
    fd = os.open(LOCK, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _make_host(
    stack: contextlib.ExitStack, index: int, subnet: ipaddress.IPv4Network, target: tuple[str, int]
) -> Host:
    """One namespace, its veth pair, addresses, route and proxy; undone by `stack`."""
    namespace = f"{PREFIX}{os.getpid()}h{next(_serial)}"
    if len(namespace) > 15:  # the root-side link has the same name: IFNAMSIZ - 1
        raise NetnsError(f"{namespace!r} is too long for a link name")
    gateway, address = (str(a) for a in itertools.islice(subnet.hosts(), 2))
    _ip("netns", "add", namespace)
    stack.callback(_ip_delete, "netns", "del", namespace)
    _ip("link", "add", namespace, "type", "veth", "peer", "name", NS_LINK, "netns", namespace)
    stack.callback(_ip_delete, "link", "del", "dev", namespace)
    _ip("addr", "add", f"{gateway}/30", "dev", namespace)
    _ip("link", "set", "dev", namespace, "up")
    ns = ("-n", namespace)
    _ip(*ns, "addr", "add", f"{address}/30", "dev", NS_LINK)
    _ip(*ns, "link", "set", "dev", "lo", "up")
    _ip(*ns, "link", "set", "dev", NS_LINK, "up")
    _ip(*ns, "route", "add", "default", "via", gateway)
    mac = Path(f"/sys/class/net/{namespace}/address").read_text().strip()
    _ip(*ns, "neigh", "replace", gateway, "lladdr", mac, "dev", NS_LINK, "nud", "permanent")
    _wait_state(namespace, None, up=True)
    _wait_state(NS_LINK, namespace, up=True)
    proxy = TcpProxy(*target, listen_host=gateway)
    stack.callback(proxy.close)
    proxy.up()
    return Host(f"h{index}", namespace, namespace, address, gateway, proxy)


@contextlib.contextmanager
def hosts(count: int, *, target: tuple[str, int] = ("127.0.0.1", 5432)) -> Iterator[list[Host]]:
    """`count` hosts, each with its own link to `target`; all removed afterwards.

    Fails (CI) or skips (elsewhere) the calling test if namespaces cannot be made here.
    """
    if shutil.which("ip") is None:
        unavailable("no `ip` command: install iproute2")
    if os.geteuid() != 0:
        unavailable(f"running as uid {os.geteuid()}, not root")
    with contextlib.ExitStack() as stack:
        made: list[Host] = []
        with _allocation_lock():
            remove_stale()
            for index, subnet in enumerate(_free_subnets(count), start=1):
                try:
                    made.append(_make_host(stack, index, subnet, target))
                except NetnsError as exc:
                    if index == 1 and any(s in str(exc) for s in _UNAVAILABLE):
                        stack.close()
                        unavailable(str(exc))
                    raise
        yield made
