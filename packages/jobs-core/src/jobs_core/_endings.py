"""How a handler's run ended, as the worker tells it: returned (with a value or not),
raised a `HandlerSignal`, or failed (with the traceback the attempt history keeps)."""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any

import attrs

from jobs_core._signals import HandlerSignal


@attrs.frozen
class Failure:
    """How an attempt failed: the error recorded as `last_error`, and the traceback kept
    in the attempt history (None when no exception was raised, as at a timeout)."""

    error: str
    traceback: str | None = None

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        """The failure a handler's exception makes: its type and message, and traceback."""
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return cls(error, handler_traceback(exc))


@attrs.frozen
class Returned:
    """A handler returned something other than None: its result, not yet checked."""

    value: Any


#: Where this package's modules are: the worker's own frames atop a handler's traceback
#: (the calls that ran it) are left out of the traceback kept.
_OWN_FILES = str(Path(__file__).parent) + os.sep


def handler_traceback(exc: BaseException) -> str:
    """The traceback of `exc` (and of the exceptions it chains) as the handler saw it:
    without the frames of the worker that called the handler."""
    shown = traceback.TracebackException.from_exception(exc)
    seen: set[int] = set()
    pending = [shown]
    while pending:
        part = pending.pop()
        if id(part) in seen:
            continue
        seen.add(id(part))
        frames = list(part.stack)
        while len(frames) > 1 and frames[0].filename.startswith(_OWN_FILES):
            frames.pop(0)
        part.stack = traceback.StackSummary.from_list(frames)
        pending += [p for p in (part.__cause__, part.__context__) if p is not None]
    return "".join(shown.format())


#: How a run ended, as `_call` tells it: None (returned None), the result, the signal
#: raised, or the failure.
Ending = Returned | HandlerSignal | Failure | None


def cause_traceback(signal: HandlerSignal) -> str | None:
    """The traceback of a `Retry` or `GiveUp` raised while handling another exception
    (it shows that one too); None for one raised on purpose with nothing behind it."""
    if signal.__cause__ is None and signal.__context__ is None:
        return None
    return handler_traceback(signal)
