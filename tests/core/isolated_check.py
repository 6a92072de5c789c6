"""Run one job end to end with nothing but jobs-core installed (used by `nox -s isolated`)."""

from __future__ import annotations

import asyncio

from jobs_core import Jobs, open_store


async def main() -> None:
    jobs = Jobs(open_store("memory://"))
    seen: list[object] = []
    jobs.register("hello", lambda job: seen.append(job.payload))
    job = await jobs.enqueue("hello", {"name": "world"})
    assert await jobs.run_once() == 1
    assert (await jobs.get(job.id)).status == "completed"
    assert seen == [{"name": "world"}]
    print("jobs-core ran a job on its own")


if __name__ == "__main__":
    asyncio.run(main())
