"""A PostgreSQL client the netns test drives line by line: `python -m tests.faults.netns_probe URL`.

It runs inside a host's namespace and answers each command on stdin with one line on
stdout, so the test waits on answers instead of sleeping. Connections have names:

    connect NAME SECONDS   open connection NAME (asyncpg connect timeout SECONDS)
    query NAME SECONDS     SELECT 1 on NAME, with a timeout of SECONDS
    send NAME              start SELECT 1 on NAME with no timeout; answer at once
    wait NAME SECONDS      the answer of NAME's sent query, waiting up to SECONDS

Answers: "ok" (connect), "ok <value>" (query, wait), "sent", "timeout", or
"error <ExceptionClass>: <message>" (refused, unreachable, reset, ...).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable

import asyncpg


async def _answer(coro: Awaitable[object]) -> str:
    try:
        value = await coro
    except TimeoutError:  # before OSError: TimeoutError is one
        return "timeout"
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"error {type(exc).__name__}: {exc}"
    return "ok" if value is None else f"ok {value}"


async def main(url: str) -> None:
    conns: dict[str, asyncpg.Connection] = {}
    sent: dict[str, asyncio.Task[object]] = {}

    async def connect(name: str, timeout: float) -> None:
        conns[name] = await asyncpg.connect(url, timeout=timeout)

    print("ready", flush=True)
    while line := await asyncio.to_thread(sys.stdin.readline):
        command, name, *rest = line.split()
        seconds = float(rest[0]) if rest else 0.0
        if command == "connect":
            answer = await _answer(connect(name, seconds))
        elif command == "query":
            answer = await _answer(conns[name].fetchval("SELECT 1", timeout=seconds))
        elif command == "send":
            sent[name] = asyncio.ensure_future(conns[name].fetchval("SELECT 1"))
            answer = "sent"
        elif command == "wait":
            answer = await _answer(asyncio.wait_for(asyncio.shield(sent[name]), seconds))
        else:
            answer = f"error ValueError: unknown command {command!r}"
        print(answer, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
