"""The store's own thread: runs its calls one at a time, in the order they were made.

Cheaper than `loop.run_in_executor` on a one-thread pool: a call is one `SimpleQueue.put`
and one asyncio future. The thread runs every call already queued before it wakes the
event loop, and then wakes each waiting loop once for the whole lot, so a burst of calls
(a worker pool claiming and writing results) costs one loop wake-up, not one per call.
A call whose future was cancelled before its turn is skipped, never run.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")

_Call = tuple[Callable[[], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]
_Outcome = tuple["asyncio.Future[Any]", bool, Any]
_STOP = None


class StoreThread:
    """Runs zero-argument callables on one dedicated daemon thread, started on first use."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: SimpleQueue[_Call | None] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        # A store dropped without `close()` must not leave its thread waiting forever.
        weakref.finalize(self, self._queue.put, _STOP)

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Queue `fn`; the future settles with its result or exception on this loop."""
        if self._thread is None:
            self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, future, loop))
        return future

    def stop(self) -> None:
        """Let the thread end once it has run everything queued before this."""
        self._queue.put(_STOP)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(
                    target=_serve, args=(self._queue,), name=self._name, daemon=True
                )
                thread.start()
                self._thread = thread


def _serve(queue: SimpleQueue[_Call | None]) -> None:
    """The thread's loop: run calls in order; settle futures when the queue runs dry."""
    finished: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    while True:
        call = queue.get()
        if call is _STOP:
            _deliver(finished)
            return
        fn, future, loop = call
        if not future.cancelled():
            try:
                outcome: _Outcome = (future, True, fn())
            except StopIteration as exc:  # a future refuses StopIteration
                outcome = (future, False, RuntimeError(f"store call raised {exc!r}"))
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
                outcome = (future, False, exc)
            finished.setdefault(loop, []).append(outcome)
        if queue.empty():
            _deliver(finished)
            finished = {}


def _deliver(finished: dict[asyncio.AbstractEventLoop, list[_Outcome]]) -> None:
    for loop, outcomes in finished.items():
        # A closed loop raises RuntimeError: nobody is waiting there any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, outcomes)


def _settle(outcomes: list[_Outcome]) -> None:
    """On the caller's loop: hand each result or exception to its future."""
    for future, ok, value in outcomes:
        if future.done():  # cancelled while it ran
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
