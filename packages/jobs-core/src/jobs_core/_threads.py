"""Run plain `def` handlers on daemon threads, so a stuck one never blocks the event loop
or the interpreter's exit (a thread cannot be cancelled; it is abandoned instead)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def run_in_daemon_thread(fn: Callable[[], T]) -> asyncio.Future[T]:
    """Start `fn` on a new daemon thread; the future resolves with its result or error."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(ok: bool, value: object) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)  # type: ignore[arg-type]
        else:
            assert isinstance(value, BaseException)
            future.set_exception(value)

    def target() -> None:
        try:
            result = context.run(fn)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            outcome: tuple[bool, object] = (False, exc)
        else:
            outcome = (True, result)
        with contextlib.suppress(RuntimeError):  # loop closed while the thread ran
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=target, name="jobs-handler", daemon=True).start()
    return future
