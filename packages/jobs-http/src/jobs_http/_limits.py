"""Connection limits for `jobs serve`: slow or idle clients cannot hold the server.

Uvicorn's h11 protocol only times out a connection that sits idle *after* a response
(`timeout_keep_alive`). A client that connects and sends nothing, sends its request head
a byte at a time, or trickles its body, is held for as long as it likes, and enough of
them exhaust the process's file descriptors so that `accept()` fails for everyone.

`guarded_protocol` subclasses uvicorn's `H11Protocol` and adds, per connection:

- a head deadline: the request line and headers must be complete within `header_timeout`
  of the connection opening or of the previous response ending;
- a body deadline: once the head is in, the whole body must arrive within `body_timeout`
  (a total deadline, so 1 byte every 0.2 s does not keep it alive);
- a cap of `max_connections` open connections. At the cap, a new connection evicts the
  connection that has been idle longest (one waiting for a request head); if every
  connection is busy with a request, the new one is closed at once. So a flood of idle
  sockets cannot lock real clients out, and the descriptors in use stay bounded.

A connection past a deadline is closed without an answer, as uvicorn closes an idle
keep-alive connection. In-flight requests are bounded too: HTTP/1.1 serves one request
per connection at a time, so there are at most `max_connections` of them.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

import attrs
import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger("jobs_http")

#: Highest default connection cap, whatever the open-file limit.
MAX_CONNECTIONS_CEILING = 1000


def default_max_connections() -> int:
    """1000, or a third of the open-file limit if that is lower.

    Each connection is one descriptor, and asyncio may accept up to `backlog` (set to the
    same number) more in one loop turn before the cap closes them; a third for each
    leaves the rest for the store, the log and the listening socket.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS_CEILING
    return max(1, min(MAX_CONNECTIONS_CEILING, soft // 3))


@attrs.frozen(kw_only=True)
class ConnectionLimits:
    """Deadlines (seconds) and the connection cap of one server."""

    keep_alive_timeout: float = 5.0
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = attrs.field(factory=default_max_connections)

    def __attrs_post_init__(self) -> None:
        for name in ("keep_alive_timeout", "header_timeout", "body_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0 seconds, got {getattr(self, name)}")
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {self.max_connections}")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a head deadline, a body deadline and a connection cap."""

    limits: ConnectionLimits = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn types it as int, but it only ever feeds `loop.call_later`.
        self.timeout_keep_alive = self.limits.keep_alive_timeout  # type: ignore[assignment]
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._idle_since = 0.0

    # -- uvicorn's hooks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self._make_room():
            logger.debug("refused a connection: %d open and all busy", len(self.connections))
            transport.close()
            return
        self._idle_since = self.loop.time()
        self._follow_state()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_state()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request head gets a fresh deadline, counted from this response.
        self._cancel(self._head_timer)
        self._head_timer = None
        self._idle_since = self.loop.time()
        self._follow_state()

    # -- deadlines ---------------------------------------------------------------

    def _follow_state(self) -> None:
        """Arm the deadline of what the client owes now: a head, a body, or nothing."""
        if self.transport.is_closing():
            self._cancel_timers()
            return
        waiting_for = self.conn.their_state
        if waiting_for is h11.IDLE and self._request_done():
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(
                    self.limits.header_timeout, self._expire, "request head"
                )
        elif waiting_for is h11.SEND_BODY:
            self._cancel(self._head_timer)
            self._head_timer = None
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(
                    self.limits.body_timeout, self._expire, "request body"
                )
        else:
            self._cancel_timers()

    def _request_done(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _expire(self, what: str) -> None:
        if not self.transport.is_closing():
            logger.debug("closed a connection: its %s did not arrive in time", what)
            self.transport.close()

    def _cancel_timers(self) -> None:
        self._cancel(self._head_timer)
        self._cancel(self._body_timer)
        self._head_timer = self._body_timer = None

    @staticmethod
    def _cancel(timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()

    # -- the cap -----------------------------------------------------------------

    def _is_idle(self) -> bool:
        """Waiting for a request head (new, or kept alive after a response)."""
        return self.conn.their_state is h11.IDLE and self._request_done()

    def _make_room(self) -> bool:
        """Whether this new connection may stay, evicting the longest-idle one if needed."""
        others = [
            conn
            for conn in self.connections
            if conn is not self
            and isinstance(conn, GuardedH11Protocol)
            and not conn.transport.is_closing()
        ]
        if len(others) < self.limits.max_connections:
            return True
        idle = [conn for conn in others if conn._is_idle()]
        if not idle:
            return False
        oldest = min(idle, key=lambda conn: conn._idle_since)
        logger.debug("at %d connections: closed the one idle longest", len(others))
        oldest.transport.close()
        return True


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """The protocol class to give `uvicorn.Config(http=...)` for these limits."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})
