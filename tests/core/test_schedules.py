"""Schedules' pure arithmetic (slots, DST, misfire) and validation."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jobs_core import (
    MAX_SLOTS_PER_FIRE,
    MISFIRE_GRACE,
    CronUnavailable,
    InvalidSchedule,
    due_slots,
    next_slot,
    slot_jobs,
    timing_key,
)
from jobs_core._schedules import check_schedule_name, check_timing
from jobs_core.testing.contract import make_schedule

T0 = datetime(2030, 1, 1, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


def local(year: int, month: int, day: int, hour: int) -> datetime:
    return datetime(year, month, day, hour, tzinfo=PARIS)


def test_every_counts_from_the_epoch_strictly_after() -> None:
    schedule = make_schedule(every=timedelta(hours=1))
    assert next_slot(schedule, T0) == T0 + timedelta(hours=1)
    assert next_slot(schedule, T0 - timedelta(microseconds=1)) == T0
    odd = make_schedule(every=timedelta(seconds=7))
    slot = next_slot(odd, T0)
    assert (slot - datetime(1970, 1, 1, tzinfo=UTC)) % timedelta(seconds=7) == timedelta(0)
    assert T0 < slot <= T0 + timedelta(seconds=7)


def test_cron_is_judged_in_its_time_zone() -> None:
    schedule = make_schedule(cron="0 3 * * *", timezone="Europe/Paris")
    # 03:00 in Paris in winter is 02:00 UTC.
    assert next_slot(schedule, T0) == datetime(2030, 1, 1, 2, tzinfo=UTC)
    summer = datetime(2030, 7, 1, tzinfo=UTC)
    assert next_slot(schedule, summer) == datetime(2030, 7, 1, 1, tzinfo=UTC)


def test_a_local_time_skipped_by_spring_forward_fires_after_the_gap() -> None:
    """Paris skips 02:00-03:00 on 2030-03-31: `30 2 * * *` fires at 03:00 local."""
    schedule = make_schedule(cron="30 2 * * *", timezone="Europe/Paris")
    slot = next_slot(schedule, local(2030, 3, 30, 12))
    assert slot.astimezone(PARIS).replace(tzinfo=None) == datetime(2030, 3, 31, 3, 0)
    after = next_slot(schedule, slot)
    assert after.astimezone(PARIS).replace(tzinfo=None) == datetime(2030, 4, 1, 2, 30)


def test_the_repeated_hour_of_fall_back_fires_once() -> None:
    """Paris repeats 02:00-03:00 on 2030-10-27: `30 2 * * *` fires at the first 02:30."""
    schedule = make_schedule(cron="30 2 * * *", timezone="Europe/Paris")
    slot = next_slot(schedule, local(2030, 10, 26, 12))
    assert slot == datetime(2030, 10, 27, 0, 30, tzinfo=UTC)  # 02:30 CEST
    after = next_slot(schedule, slot)
    assert after.astimezone(PARIS).replace(tzinfo=None) == datetime(2030, 10, 28, 2, 30)


def test_an_interval_cron_ticks_in_real_time_across_fall_back() -> None:
    """`0 * * * *` fires at both 02:00s of the repeated hour (they are an hour apart)."""
    schedule = make_schedule(cron="0 * * * *", timezone="Europe/Paris")
    start = datetime(2030, 10, 26, 23, 30, tzinfo=UTC)  # 01:30 CEST
    slots = [next_slot(schedule, start)]
    for _ in range(3):
        slots.append(next_slot(schedule, slots[-1]))
    assert [s - slots[0] for s in slots] == [timedelta(hours=h) for h in range(4)]


def test_a_slot_is_due_only_once_its_time_came() -> None:
    schedule = make_schedule(every=timedelta(seconds=10))
    early = due_slots(schedule, schedule.next_fire_at - timedelta(microseconds=1))
    assert early.slots == ()
    assert early.next_fire_at == schedule.next_fire_at
    on_time = due_slots(schedule, schedule.next_fire_at)
    assert on_time.slots == (schedule.next_fire_at,)
    assert on_time.next_fire_at == schedule.next_fire_at + timedelta(seconds=10)


@pytest.mark.parametrize("misfire", ["latest", "all", "skip"])
def test_slots_within_the_grace_always_fire(misfire: str) -> None:
    schedule = make_schedule(every=timedelta(seconds=1), misfire=misfire)  # type: ignore[arg-type]
    now = schedule.next_fire_at + timedelta(seconds=4.5)
    assert len(due_slots(schedule, now).slots) == 5


def test_missed_slots_follow_misfire() -> None:
    base = make_schedule(cron="0 3 * * *", timezone="Europe/Paris")
    now = base.next_fire_at + timedelta(days=3, hours=1)
    latest = due_slots(base, now)
    assert latest.slots == (base.next_fire_at + timedelta(days=3),)
    assert latest.next_fire_at == base.next_fire_at + timedelta(days=4)
    every = make_schedule(cron="0 3 * * *", timezone="Europe/Paris", misfire="all")
    assert due_slots(every, now).slots == tuple(
        base.next_fire_at + timedelta(days=d) for d in range(4)
    )
    skip = make_schedule(cron="0 3 * * *", timezone="Europe/Paris", misfire="skip")
    assert due_slots(skip, now).slots == ()
    assert due_slots(skip, now).next_fire_at == latest.next_fire_at


def test_all_is_capped_at_the_most_recent_slots() -> None:
    schedule = make_schedule(every=timedelta(seconds=1), misfire="all")
    now = schedule.next_fire_at + timedelta(hours=1)
    firing = due_slots(schedule, now)
    assert len(firing.slots) == MAX_SLOTS_PER_FIRE
    assert firing.slots[-1] == now
    assert firing.next_fire_at == now + timedelta(seconds=1)
    assert now - MISFIRE_GRACE > firing.slots[0]


def test_slot_jobs_are_due_at_their_slot() -> None:
    schedule = make_schedule(every=timedelta(seconds=1))
    slots = [T0, T0 + timedelta(seconds=1)]
    jobs = slot_jobs(schedule, slots, now=T0 + timedelta(seconds=2), max_retries=4)
    assert [j.run_at for j in jobs] == slots
    assert {(j.topic, j.max_retries, j.priority) for j in jobs} == {("t", 4, 0)}
    assert jobs[0].payload == schedule.payload
    assert jobs[0].id != jobs[1].id


def test_the_timing_key_tells_timing_changes_apart() -> None:
    a = make_schedule(cron="0 3 * * *", timezone="Europe/Paris")
    assert timing_key(a) == timing_key(make_schedule(cron="0 3 * * *", timezone="Europe/Paris"))
    assert timing_key(a) != timing_key(make_schedule(cron="0 3 * * *"))
    assert timing_key(make_schedule(every=timedelta(seconds=60))) == timing_key(
        make_schedule(every=timedelta(minutes=1))
    )


@pytest.mark.parametrize(
    ("cron", "every", "timezone", "misfire", "says"),
    [
        (None, None, "UTC", "latest", "exactly one"),
        ("* * * * *", timedelta(seconds=1), "UTC", "latest", "exactly one"),
        ("not a cron", None, "UTC", "latest", "bad cron"),
        ("61 * * * *", None, "UTC", "latest", "bad cron"),
        (None, timedelta(0), "UTC", "latest", "positive"),
        (None, 5, "UTC", "latest", "positive"),
        (None, timedelta(seconds=1), "Mars/Olympus", "latest", "unknown time zone"),
        (None, timedelta(seconds=1), "UTC", "sometimes", "misfire"),
    ],
)
def test_bad_timings_are_refused(
    cron: object, every: object, timezone: str, misfire: str, says: str
) -> None:
    with pytest.raises(InvalidSchedule, match=says):
        check_timing(cron, every, timezone, misfire)


@pytest.mark.parametrize("name", ["", "has space", "x" * 256, 3])
def test_bad_names_are_refused(name: object) -> None:
    with pytest.raises(InvalidSchedule):
        check_schedule_name(name)


def test_cron_without_cronsim_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cronsim", None)
    with pytest.raises(CronUnavailable, match=r'pip install "jobs-core\[cron\]"'):
        check_timing("0 3 * * *", None, "UTC", "latest")
    check_timing(None, timedelta(seconds=1), "UTC", "latest")  # every= needs nothing
