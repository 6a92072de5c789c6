"""Run one job end to end with nothing but jobs-core installed (used by `nox -s isolated`),
and an `every=` schedule with cronsim unimportable (it is an optional extra)."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

from jobs_core import CronUnavailable, Jobs, open_store
from jobs_core.testing import FakeClock


async def main() -> None:
    jobs = Jobs(open_store("memory://"))
    seen: list[object] = []
    jobs.register("hello", lambda job: seen.append(job.payload))
    job = await jobs.enqueue("hello", {"name": "world"})
    assert await jobs.run_once() == 1
    assert (await jobs.get(job.id)).status == "completed"
    assert seen == [{"name": "world"}]
    print("jobs-core ran a job on its own")
    await schedules_without_cronsim()


async def schedules_without_cronsim() -> None:
    sys.modules["cronsim"] = None  # type: ignore[assignment]  # as if not installed
    clock = FakeClock()
    jobs = Jobs(open_store("memory://"), clock=clock)
    fired: list[object] = []
    jobs.register("tick", lambda job: fired.append(job.run_at))
    await jobs.schedule("tick", topic="tick", every=timedelta(seconds=1))
    clock.advance(timedelta(seconds=3))
    assert await jobs.run_once() == 3
    refusal: CronUnavailable | None = None
    try:
        await jobs.schedule("nightly", topic="tick", cron="0 3 * * *")
    except CronUnavailable as exc:
        refusal = exc
    assert refusal is not None, "a cron schedule without cronsim was accepted"
    assert "jobs-core[cron]" in str(refusal)
    del sys.modules["cronsim"]
    print("every= schedules ran without cronsim; cron= asked for jobs-core[cron]")


if __name__ == "__main__":
    asyncio.run(main())
