"""Each slot job holds its slot's unique key: a slot fired twice stores one active job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobs_core import MAX_UNIQUE_KEY_LENGTH, MemoryStore, slot_jobs, slot_key
from jobs_core.testing.contract import make_schedule

T0 = datetime(2030, 1, 1, 3, tzinfo=UTC)


def test_a_slot_key_names_the_schedule_and_the_slot_in_utc() -> None:
    paris = T0.astimezone(datetime.now().astimezone().tzinfo)
    assert slot_key("nightly", T0) == "schedule:nightly@2030-01-01T03:00:00Z"
    assert slot_key("nightly", paris) == slot_key("nightly", T0)
    long = slot_key("n" * 255, T0)
    assert len(long) <= MAX_UNIQUE_KEY_LENGTH
    assert long != slot_key("n" * 254 + "m", T0)


async def test_a_slot_stored_twice_keeps_one_active_job() -> None:
    schedule = make_schedule(next_fire_at=T0)
    store = MemoryStore()
    first = slot_jobs(schedule, [T0, T0 + timedelta(seconds=1)], now=T0, max_retries=3)
    again = slot_jobs(schedule, [T0], now=T0, max_retries=3)
    assert [job.unique_key for job in first] == [
        slot_key(schedule.name, T0),
        slot_key(schedule.name, T0 + timedelta(seconds=1)),
    ]
    await store.insert(first)
    assert list(await store.insert(again)) == [first[0]]
