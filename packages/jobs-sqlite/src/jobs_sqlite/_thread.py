"""The store's own thread: runs its calls one at a time, in the order they were made.

Cheaper than `loop.run_in_executor` on a one-thread pool: a call is one `SimpleQueue.put`
and one asyncio future. The thread runs every call already queued before it wakes the
event loop, and then wakes each waiting loop once for the whole lot, so a burst of calls
(a worker pool claiming and writing results) costs one loop wake-up, not one per call.
A call whose future was cancelled before its turn is skipped, never run.

Between calls, `try_borrow` lets the caller's own thread use what the calls use (the
store's connection) directly, skipping the hop; the thread holds the same lock while it
runs a call, so the two never overlap.
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
        #: Held while a call runs, on the thread or borrowed by a caller.
        self._busy = threading.Lock()
        #: Calls submitted and not yet finished; callers borrow only when there are none,
        #: so the thread's calls are never starved by callers borrowing back to back.
        self._pending = _Counter()
        # A store dropped without `close()` must not leave its thread waiting forever.
        weakref.finalize(self, self._queue.put, _STOP)

    @property
    def started(self) -> bool:
        """Whether the thread was started (by a first `submit`)."""
        return self._thread is not None

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Queue `fn`; the future settles with its result or exception on this loop."""
        if self._thread is None:
            self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.add(1)
        self._queue.put((fn, future, loop))
        return future

    def try_borrow(self) -> bool:
        """Whether the caller may do a call's work itself, right now, on its own thread:
        only while no call is queued or runs here. If so, the thread waits until the
        caller's `give_back` (plain methods, not a context manager: this is on every
        enqueue's path, where a generator-based one costs a microsecond)."""
        return not self._pending.value and self._busy.acquire(blocking=False)

    def give_back(self) -> None:
        """End a successful `try_borrow`."""
        self._busy.release()

    def stop(self) -> None:
        """Let the thread end once it has run everything queued before this."""
        self._queue.put(_STOP)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(
                    target=_serve,
                    args=(self._queue, self._busy, self._pending),
                    name=self._name,
                    daemon=True,
                )
                thread.start()
                self._thread = thread


def _serve(queue: SimpleQueue[_Call | None], busy: threading.Lock, pending: _Counter) -> None:
    """The thread's loop: run calls in order; settle futures when the queue runs dry."""
    finished: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    while True:
        call = queue.get()
        if call is _STOP:
            _deliver(finished)
            return
        fn, future, loop = call
        if not future.cancelled():
            with busy:
                outcome = _outcome(fn, future)
            finished.setdefault(loop, []).append(outcome)
        pending.add(-1)
        if queue.empty():
            _deliver(finished)
            finished = {}


class _Counter:
    """An int two threads change; reading it needs no lock."""

    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, delta: int) -> None:
        with self._lock:
            self.value += delta


def _outcome(fn: Callable[[], Any], future: asyncio.Future[Any]) -> _Outcome:
    try:
        return (future, True, fn())
    except StopIteration as exc:  # a future refuses StopIteration
        return (future, False, RuntimeError(f"store call raised {exc!r}"))
    except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
        return (future, False, exc)


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
