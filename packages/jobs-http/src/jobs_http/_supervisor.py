"""`jobs worker --processes N`: keep N worker processes running, stop them all together.

Each child is a plain `jobs worker` (the same arguments, without `--processes`). A child
that exits while the supervisor is not stopping is started again, after a pause that
doubles with each quick death in a row (so a crash loop costs a little CPU, not all of
it) and resets once a child has run for `STABLE_RUN`. At SIGTERM or SIGINT the
supervisor sends that signal on to every child and waits for each: the children stop
gracefully (stop claiming, wait `shutdown_grace`, hand the rest back as `pending`).
The exit code is 0 when every child stopped cleanly: it exited 0, or the signal ended
it before it began to work (`Jobs.run()` sets its handlers before its first claim, so
such a child held no job).

A supervisor killed with SIGKILL cannot tell its children; they keep working until they
are signalled themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence

logger = logging.getLogger("jobs_http.supervisor")

#: Signals the supervisor passes on to its children, and that make it stop.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: First pause before restarting a child that died quickly (then doubling).
RESTART_DELAY = 0.5
#: Longest pause before a restart.
MAX_RESTART_DELAY = 30.0
#: Seconds a child must have run for its death to count as isolated, not a crash loop.
STABLE_RUN = 10.0


def restart_delay(quick_deaths: int) -> float:
    """Pause before the next start after `quick_deaths` quick deaths in a row (>= 1)."""
    return float(min(RESTART_DELAY * 2 ** min(quick_deaths - 1, 16), MAX_RESTART_DELAY))


class Supervisor:
    """Runs `processes` copies of `command` until told to stop (see the module)."""

    def __init__(
        self,
        command: Sequence[str],
        processes: int,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._command = list(command)
        self._processes = processes
        self._env = dict(env) if env is not None else None
        self._children: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = asyncio.Event()
        self._signal = signal.SIGTERM
        self._codes: list[int] = []

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop restarting; pass `sig` on to every running child."""
        if self._stopping.is_set():
            return
        self._signal = sig
        self._stopping.set()
        logger.info("stopping %d worker process(es) on %s", len(self._children), sig.name)
        for child in list(self._children.values()):
            _send(child, sig)

    @property
    def pids(self) -> list[int]:
        """Process ids of the running children, by slot."""
        return [self._children[slot].pid for slot in sorted(self._children)]

    async def run(self) -> int:
        """Supervise until SIGTERM/SIGINT and every child has exited; the exit code."""
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self.stop, sig)
        try:
            await asyncio.gather(*(self._keep(slot) for slot in range(self._processes)))
        finally:
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)
            for child in self._children.values():  # only if this ended by an error
                _send(child, signal.SIGTERM)
        clean = {0, -self._signal, *([130] if self._signal is signal.SIGINT else [])}
        return 0 if all(code in clean for code in self._codes) else 1

    async def _keep(self, slot: int) -> None:
        """Keep one child running in `slot` until the supervisor stops."""
        quick_deaths = 0
        while not self._stopping.is_set():
            began = time.monotonic()
            try:
                child = await asyncio.create_subprocess_exec(*self._command, env=self._env)
            except OSError as exc:  # no such interpreter, no processes left: try later
                quick_deaths += 1
                logger.error("worker process %d could not be started: %s", slot, exc)
                await self._pause(restart_delay(quick_deaths))
                continue
            self._children[slot] = child
            logger.info("worker process %d started (pid %d)", slot, child.pid)
            if self._stopping.is_set():  # the signal came while it was being started
                _send(child, self._signal)
            code = await child.wait()
            del self._children[slot]
            if self._stopping.is_set():
                self._codes.append(code)
                logger.info("worker process %d (pid %d) exited with %d", slot, child.pid, code)
                return
            quick_deaths = quick_deaths + 1 if time.monotonic() - began < STABLE_RUN else 1
            delay = restart_delay(quick_deaths)
            logger.warning(
                "worker process %d (pid %d) exited with %d; starting another in %gs",
                slot,
                child.pid,
                code,
                delay,
            )
            await self._pause(delay)

    async def _pause(self, delay: float) -> None:
        """Wait `delay` seconds, or less if the supervisor stops meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)


def _send(child: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    if child.returncode is None:
        with contextlib.suppress(ProcessLookupError):  # it just exited: wait() says so
            os.kill(child.pid, sig)
