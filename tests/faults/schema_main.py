"""One of many processes racing to create the schema: `python -m tests.faults.schema_main
URL START_AT`. It imports everything, waits for the shared start time, then makes its
first store call (which creates the schema) and prints "ok" or the error."""

from __future__ import annotations

import asyncio
import sys
import time

from jobs_core import open_store


async def main(url: str, start_at: float) -> int:
    store = open_store(url)
    time.sleep(max(0.0, start_at - time.time()))
    try:
        await store.count_by_status()
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {exc}")
        return 1
    finally:
        await store.close()
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], float(sys.argv[2]))))
