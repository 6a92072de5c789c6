"""`Jobs`' schedule API on the memory store and a fake clock: create, update, list,
pause, resume, delete, `@periodic` reconciled at start-up, firing by the worker."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from jobs_core import (
    InvalidOptions,
    InvalidSchedule,
    InvalidTopic,
    Job,
    Jobs,
    JobStatus,
    MemoryStore,
    Schedule,
    ScheduleNotFound,
)
from jobs_core.testing import FakeClock
from tests.core.conftest import T0, settle, until

SECOND = timedelta(seconds=1)


async def test_schedule_creates_then_updates_keeping_the_next_slot(
    jobs: Jobs, clock: FakeClock
) -> None:
    created = await jobs.schedule("tick", topic="t", every=timedelta(minutes=1), payload={"a": 1})
    assert isinstance(created, Schedule)
    assert (created.next_fire_at, created.created, created.paused) == (
        T0 + timedelta(minutes=1),
        T0,
        False,
    )
    clock.advance(timedelta(seconds=30))
    updated = await jobs.schedule(
        "tick", topic="t", every=timedelta(minutes=1), payload={"a": 2}, priority=5
    )
    assert (updated.next_fire_at, updated.created, updated.updated) == (
        created.next_fire_at,
        T0,
        clock.now(),
    )
    assert (updated.payload, updated.priority) == ({"a": 2}, 5)
    retimed = await jobs.schedule("tick", topic="t", every=timedelta(seconds=7))
    assert retimed.next_fire_at < created.next_fire_at
    assert [s.name for s in await jobs.schedules()] == ["tick"]
    assert await jobs.get_schedule("tick") == retimed


async def test_bad_schedules_are_refused_storing_nothing(jobs: Jobs) -> None:
    with pytest.raises(InvalidSchedule):
        await jobs.schedule("x", topic="t")
    with pytest.raises(InvalidSchedule):
        await jobs.schedule("x", topic="t", cron="0 0 30 2 *")
    with pytest.raises(InvalidTopic):
        await jobs.schedule("x", topic="bad topic", every=SECOND)
    with pytest.raises(InvalidOptions):
        await jobs.schedule("x", topic="t", every=SECOND, priority=1000)
    assert await jobs.schedules() == []


async def test_due_slots_fire_through_run_once(jobs: Jobs, clock: FakeClock) -> None:
    ran: list[Job] = []
    jobs.register("t", ran.append)
    await jobs.schedule("tick", topic="t", every=SECOND, payload={"n": 1}, max_retries=0)
    assert await jobs.run_once() == 0
    clock.advance(SECOND * 2.5)
    assert await jobs.run_once() == 2
    assert [j.run_at for j in ran] == [T0 + SECOND, T0 + 2 * SECOND]
    assert [(j.payload, j.max_retries) for j in ran] == [({"n": 1}, 0)] * 2
    stored = await jobs.get_schedule("tick")
    assert (stored.next_fire_at, stored.last_fired_at, stored.last_job_id) == (
        T0 + 3 * SECOND,
        T0 + 2 * SECOND,
        ran[-1].id,
    )


async def test_a_paused_schedule_skips_its_slots_until_resumed(
    jobs: Jobs, clock: FakeClock, store: MemoryStore
) -> None:
    await jobs.schedule("tick", topic="t", every=SECOND)
    paused = await jobs.pause_schedule("tick")
    assert paused.paused
    clock.advance(SECOND * 5)
    await jobs.run_once()
    assert (await jobs.stats()).total == 0
    resumed = await jobs.resume_schedule("tick")
    assert (resumed.paused, resumed.next_fire_at) == (False, T0 + 6 * SECOND)
    assert await jobs.resume_schedule("tick") == resumed  # not paused: unchanged
    clock.advance(SECOND)
    await jobs.run_once()
    page = await jobs.list(status=JobStatus.PENDING)
    assert [j.run_at for j in page.items] == [T0 + 6 * SECOND]


async def test_unschedule_deletes_and_unknown_names_are_not_found(jobs: Jobs) -> None:
    await jobs.schedule("tick", topic="t", every=SECOND)
    await jobs.unschedule("tick")
    assert await jobs.schedules() == []
    for call in (jobs.unschedule, jobs.get_schedule, jobs.pause_schedule, jobs.resume_schedule):
        with pytest.raises(ScheduleNotFound):
            await call("tick")


async def test_periodic_registers_the_handler_and_start_stores_the_schedule(
    store: MemoryStore, clock: FakeClock
) -> None:
    jobs = Jobs(store, clock=clock)
    ran: list[Job] = []

    @jobs.periodic(SECOND, payload={"kind": "beat"})
    async def heartbeat(job: Job) -> None:
        ran.append(job)

    @jobs.periodic("0 3 * * *", name="nightly-report", topic="report", timezone="Europe/Paris")
    def report(job: Job) -> None: ...

    assert jobs.topics == {"heartbeat", "report"}
    with pytest.raises(InvalidSchedule, match="twice"):
        jobs.periodic(SECOND, name="heartbeat", topic="other")(report)
    assert await jobs.schedules() == []
    await jobs.start()
    try:
        names = [(s.name, s.topic, s.timing) for s in await jobs.schedules()]
        assert names == [
            ("heartbeat", "heartbeat", "every 1s"),
            ("nightly-report", "report", "0 3 * * *"),
        ]
        await settle()
        clock.advance(SECOND)
        await until(lambda: len(ran) == 1)
        assert ran[0].payload == {"kind": "beat"}
    finally:
        await jobs.aclose()


async def test_start_up_reconciling_keeps_the_next_slot_and_the_pause(
    store: MemoryStore, clock: FakeClock
) -> None:
    """A second deploy of the same declaration changes nothing; a stored schedule no
    longer declared stays."""
    first = Jobs(store, clock=clock)
    first.periodic(timedelta(hours=1), topic="hourly")(lambda job: None)
    first.periodic(timedelta(hours=2), topic="old")(lambda job: None)
    await first.reconcile_schedules()
    await first.pause_schedule("hourly")
    before = await first.get_schedule("hourly")
    clock.advance(timedelta(minutes=10))
    second = Jobs(store, clock=clock)
    second.periodic(timedelta(hours=1), topic="hourly", priority=3)(lambda job: None)
    (after,) = await second.reconcile_schedules()
    assert (after.next_fire_at, after.paused, after.priority) == (before.next_fire_at, True, 3)
    assert [s.name for s in await second.schedules()] == ["hourly", "old"]


async def test_a_store_without_schedules_refuses_them(clock: FakeClock) -> None:
    class Plain:
        """A store with jobs only (the schedule methods are missing)."""

        async def close(self) -> None: ...

    jobs = Jobs(Plain(), clock=clock)  # type: ignore[arg-type]
    assert len(jobs.services) == 1
    with pytest.raises(InvalidOptions, match="does not keep schedules"):
        await jobs.schedules()


def test_the_readme_schedules_snippet_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    readme = Path(__file__).resolve().parents[2] / "packages" / "jobs-core" / "README.md"
    section = readme.read_text().split("## Schedules", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["heartbeat", "every"],
        ["nightly-report", "0"],
    ]


async def test_a_firer_without_cronsim_skips_cron_schedules_only(
    jobs: Jobs, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process (with the extra) stored a cron schedule: this one warns and
    still fires its `every=` schedules."""
    await jobs.schedule("nightly", topic="t", cron="* * * * *")
    await jobs.schedule("tick", topic="t", every=SECOND)
    monkeypatch.setitem(sys.modules, "cronsim", None)
    clock.advance(timedelta(minutes=1))
    await jobs.run_once()
    assert (await jobs.get_schedule("nightly")).last_fired_at is None
    assert (await jobs.get_schedule("tick")).last_fired_at == clock.now()
    assert "schedule 'nightly' not fired here" in caplog.text


async def test_with_no_schedule_due_a_tick_costs_one_query(clock: FakeClock) -> None:
    """The firer's whole cost on a drain with no due schedule: one `due_schedules`."""
    calls: list[str] = []

    class Counting(MemoryStore):
        async def due_schedules(self, *, now: datetime, limit: int) -> Sequence[Schedule]:
            calls.append("due_schedules")
            return await super().due_schedules(now=now, limit=limit)

        async def fire_schedule(self, name: str, **kwargs: Any) -> bool:
            calls.append("fire_schedule")
            return await super().fire_schedule(name, **kwargs)

    jobs = Jobs(Counting(), clock=clock)
    await jobs.schedule("later", topic="t", every=timedelta(hours=1))
    jobs.register("t", lambda job: None)
    await jobs.enqueue("t", {})
    assert await jobs.run_once() == 1
    assert calls == ["due_schedules"]
