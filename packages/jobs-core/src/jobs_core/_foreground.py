"""Stop signals for `Jobs.run()`: SIGTERM and SIGINT end the foreground run gracefully.

The handlers go on the running loop (so they run as loop callbacks, not in the middle of
a store call) and the ones in place before are put back afterwards, so an application
that had its own keeps them once `run()` returns.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: The signals that stop `Jobs.run()`: a service manager's stop, and Ctrl-C.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def on_stop_signals(
    loop: asyncio.AbstractEventLoop, callback: Callable[[], None]
) -> Iterator[None]:
    """Call `callback` on the loop at each SIGTERM or SIGINT while inside the block."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "Jobs.run() must be awaited in the main thread (only it can receive signals);"
            " elsewhere use start() and stop()"
        )
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    installed: list[signal.Signals] = []
    try:
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, callback)
            installed.append(sig)
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
            handler = previous[sig]
            if handler is not None:  # None: set outside Python, nothing to put back
                signal.signal(sig, handler)
