"""LISTEN on a dedicated connection, and keep listening across drops and restarts.

The listener holds one asyncpg connection outside the pool. When it is lost (the
server restarted, the backend was terminated, the network broke), it logs, backs off
(capped), reconnects, re-LISTENs and then reports new work once, because jobs may have
arrived while nobody was listening. Polling covers the gap meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Final

import asyncpg

log = logging.getLogger("jobs_postgres.listen")

#: Backoff between reconnect attempts: 0.1 s doubling, capped.
_RETRY_START: Final = 0.1
_RETRY_CAP: Final = 5.0
#: How often an idle listener checks that its connection still answers
#: (catches a silently dead socket that no error reported).
HEALTH_INTERVAL: Final = 15.0
_CONNECT_TIMEOUT: Final = 10.0


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    return lambda _conn: event.set()


async def listen_forever(url: str, channel: str, on_new_work: Callable[[], None]) -> None:
    """Call `on_new_work` on every notification on `channel`, until cancelled."""
    failures = 0
    connected_before = False
    while True:
        conn: Any = None
        try:
            conn = await asyncpg.connect(
                url,
                timeout=_CONNECT_TIMEOUT,
                server_settings={"application_name": "jobs_postgres listener"},
            )
            lost = asyncio.Event()
            conn.add_termination_listener(_setter(lost))
            await conn.add_listener(channel, lambda *_args: on_new_work())
            if connected_before:
                log.info("LISTEN %s re-established", channel)
            connected_before = True
            failures = 0
            on_new_work()  # anything enqueued while we were not listening
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), timeout=HEALTH_INTERVAL)
                except TimeoutError:
                    await asyncio.wait_for(conn.execute("SELECT 1"), timeout=_CONNECT_TIMEOUT)
            reason = "connection closed"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure here means: reconnect
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    if not conn.is_closed():
                        await asyncio.wait_for(conn.close(), timeout=1.0)
                with contextlib.suppress(Exception):
                    conn.terminate()
        failures += 1
        delay = min(_RETRY_START * 2 ** (failures - 1), _RETRY_CAP)
        log.warning(
            "LISTEN connection for %s lost (%s); reconnecting in %.1fs", channel, reason, delay
        )
        await asyncio.sleep(delay)


__all__ = ["listen_forever"]
