"""Stored schedules (cron or a fixed period) and the pure arithmetic of their slots.

A schedule names a topic, a payload and a timing: `cron` (a cron expression, judged in
the schedule's IANA `timezone`, parsed by the optional `cronsim` package) or `every` (a
fixed period, counted from the Unix epoch in UTC: `every=timedelta(hours=1)` fires on
the hour, whatever the zone). Each time the timing matches is a *slot*. The store keeps
the next slot (`next_fire_at`); whoever fires moves it forward by compare-and-set in the
same transaction that inserts the slot jobs, so however many processes run, a slot
fires once (`ScheduleStore.fire_schedule`).

Daylight saving time follows cronsim, which follows Debian cron: an expression with a
fixed minute and hour (`30 2 * * *`) whose local time does not exist on a
spring-forward day fires at the first valid time after the gap (03:00), and in the
repeated hour of a fall-back day it fires once (the first occurrence); expressions whose
minute or hour field starts with `*` (`*/15 * * * *`) tick in real time, so they fire
in both copies of the repeated hour and not in the skipped one.

After downtime `misfire` decides: a slot less than `MISFIRE_GRACE` old is on time and
always fires; of the older (missed) ones `latest` fires the most recent, `all` every
one, `skip` none. One firing creates at most `MAX_SLOTS_PER_FIRE` jobs (the most recent
slots); older missed slots beyond that are dropped.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, cast, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from jobs_core import _transitions as transitions
from jobs_core._errors import CronUnavailable, InvalidSchedule
from jobs_core._ids import new_job_id
from jobs_core._model import MAX_UNIQUE_KEY_LENGTH, Job, JSONValue

__all__ = [
    "MAX_SCHEDULE_NAME",
    "MAX_SLOTS_PER_FIRE",
    "MISFIRE_GRACE",
    "NEVER",
    "Firing",
    "Misfire",
    "Schedule",
    "check_schedule_name",
    "due_slots",
    "next_slot",
    "schedule_definition",
    "schedule_from_definition",
    "slot_jobs",
    "slot_key",
    "timing_key",
]

#: What `misfire` may say: fire the most recent missed slot, every one, or none.
Misfire = Literal["latest", "all", "skip"]
MISFIRES: Final[tuple[str, ...]] = get_args(Misfire)
#: Most jobs one firing of a schedule creates (`misfire="all"` after long downtime).
MAX_SLOTS_PER_FIRE: Final = 100
#: A slot younger than this when fired is on time (not missed), whatever `misfire` says.
MISFIRE_GRACE: Final = timedelta(seconds=30)
#: `next_fire_at` of a cron schedule with no slot left (one for a date that never comes).
NEVER: Final = datetime(9999, 12, 1, tzinfo=UTC)
MAX_SCHEDULE_NAME: Final = 255
_NAME: Final = re.compile(r"[A-Za-z0-9._:/\-]+")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


@attrs.frozen(kw_only=True)
class Schedule:
    """A stored schedule: what to enqueue (`topic`, `payload`, `priority`,
    `max_retries`; None: the topic's default), when (`cron` in `timezone`, or `every`),
    what to do about missed slots (`misfire`), and where it stands: `paused`, the next
    slot (`next_fire_at`, UTC), the last slot fired and its job (`last_fired_at`,
    `last_job_id`; None before the first firing)."""

    name: str
    topic: str
    payload: JSONValue = attrs.field(default=None, repr=False)
    cron: str | None = None
    every: timedelta | None = None
    timezone: str = "UTC"
    misfire: Misfire = "latest"
    priority: int = 0
    max_retries: int | None = None
    paused: bool = False
    next_fire_at: datetime
    last_fired_at: datetime | None = None
    last_job_id: str | None = None
    created: datetime
    updated: datetime

    @property
    def timing(self) -> str:
        """The timing as text: the cron expression or `every <seconds>s`."""
        if self.cron is not None:
            return self.cron
        assert self.every is not None
        return f"every {self.every.total_seconds():g}s"


@attrs.frozen(kw_only=True)
class Firing:
    """What firing a schedule at some time does: a job per slot in `slots` (ascending,
    UTC; may be empty: skipped slots), and `next_fire_at` afterwards."""

    slots: tuple[datetime, ...]
    next_fire_at: datetime


def check_schedule_name(name: object) -> str:
    """A schedule name: 1-255 letters, digits and `. _ : - /` (like a topic)."""
    if not isinstance(name, str) or not name or len(name) > MAX_SCHEDULE_NAME:
        raise InvalidSchedule(
            f"a schedule name must be a string of 1 to {MAX_SCHEDULE_NAME} characters,"
            f" got {name!r:.80}"
        )
    if not _NAME.fullmatch(name):
        raise InvalidSchedule(
            f"schedule name {name[:80]!r} may only contain letters, digits and . _ : - /"
        )
    return name


def check_timing(cron: object, every: object, timezone: object, misfire: object) -> None:
    """Raise `InvalidSchedule` unless exactly one of `cron`/`every` is given and valid,
    `timezone` is a known IANA zone and `misfire` one of `MISFIRES`. A cron expression
    without cronsim installed raises `CronUnavailable`."""
    if (cron is None) == (every is None):
        raise InvalidSchedule("a schedule needs exactly one of cron= and every=")
    zone = _zone(timezone)
    if misfire not in MISFIRES:
        raise InvalidSchedule(f"misfire must be one of {', '.join(MISFIRES)}; got {misfire!r}")
    if every is not None:
        if not isinstance(every, timedelta) or every < timedelta(microseconds=1):
            raise InvalidSchedule(f"every must be a positive timedelta, got {every!r}")
        return
    if not isinstance(cron, str) or not cron.strip():
        raise InvalidSchedule(f"cron must be a cron expression string, got {cron!r}")
    cronsim = _cronsim()
    try:
        cronsim.CronSim(cron, datetime.now(zone))
    except cronsim.CronSimError as exc:
        raise InvalidSchedule(f"bad cron expression {cron!r}: {exc}") from None


def _zone(timezone: object) -> ZoneInfo:
    if not isinstance(timezone, str) or not timezone:
        raise InvalidSchedule(f"timezone must be an IANA zone name, got {timezone!r}")
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(f"unknown time zone {timezone[:80]!r}") from None


def _cronsim() -> Any:
    """The cronsim module, imported on first use (it is an optional extra)."""
    try:
        import cronsim
    except ImportError:
        raise CronUnavailable from None
    return cronsim


def timing_key(schedule: Schedule) -> str:
    """What decides a schedule's slots, as one text: stores keep `next_fire_at` across
    an update whose key is unchanged, and recompute it when it changed."""
    if schedule.cron is not None:
        return f"cron {schedule.cron} in {schedule.timezone}"
    assert schedule.every is not None
    return f"every {_micros(schedule.every)}us"


def _micros(delta: timedelta) -> int:
    return delta // _MICROSECOND


def next_slot(schedule: Schedule, after: datetime) -> datetime:
    """The first slot strictly after `after`, in UTC (`NEVER` if a cron has none left)."""
    if schedule.every is not None:
        period = _micros(schedule.every)
        elapsed = _micros(after - _EPOCH)
        return _EPOCH + timedelta(microseconds=(elapsed // period + 1) * period)
    return next(_cron_forward(schedule, after), NEVER)


def _cron_forward(schedule: Schedule, after: datetime) -> Iterator[datetime]:
    """The cron's slots strictly after `after`, ascending, in UTC."""
    assert schedule.cron is not None
    zone = ZoneInfo(schedule.timezone)
    for slot in _cronsim().CronSim(schedule.cron, after.astimezone(zone)):
        yield cast(datetime, slot).astimezone(UTC)


def _cron_backward(schedule: Schedule, until: datetime) -> Iterator[datetime]:
    """The cron's slots at or before `until`, descending, in UTC."""
    assert schedule.cron is not None
    zone = ZoneInfo(schedule.timezone)
    # cronsim's reverse iteration starts strictly before a whole second.
    start = until.astimezone(zone).replace(microsecond=0) + timedelta(seconds=1)
    for slot in _cronsim().CronSim(schedule.cron, start, reverse=True):
        slot_utc = cast(datetime, slot).astimezone(UTC)
        if slot_utc <= until:
            yield slot_utc


def _recent_slots(schedule: Schedule, now: datetime) -> Iterator[datetime]:
    """The slots from `schedule.next_fire_at` to `now`, most recent first."""
    start = schedule.next_fire_at
    if schedule.every is not None:
        period = _micros(schedule.every)
        last = _EPOCH + timedelta(microseconds=_micros(now - _EPOCH) // period * period)
        while last >= start:
            yield last
            last -= schedule.every
        return
    for slot in _cron_backward(schedule, now):
        if slot < start:
            return
        yield slot


def due_slots(
    schedule: Schedule,
    now: datetime,
    *,
    grace: timedelta = MISFIRE_GRACE,
    cap: int = MAX_SLOTS_PER_FIRE,
) -> Firing:
    """What firing `schedule` at `now` does (see the module's doc for `misfire`).

    No slot is due before `next_fire_at`: then the firing is empty and keeps it.
    Otherwise `next_fire_at` becomes the first slot after `now`."""
    if schedule.next_fire_at > now:
        return Firing(slots=(), next_fire_at=schedule.next_fire_at)
    picked: list[datetime] = []
    for slot in _recent_slots(schedule, now):
        if len(picked) >= cap:
            break
        if now - slot <= grace or schedule.misfire == "all":
            picked.append(slot)
            continue
        if schedule.misfire == "latest":
            picked.append(slot)
        break  # older missed slots: `latest` took one, `skip` none
    return Firing(slots=tuple(reversed(picked)), next_fire_at=next_slot(schedule, now))


def slot_jobs(
    schedule: Schedule, slots: Sequence[datetime], *, now: datetime, max_retries: int
) -> list[Job]:
    """The jobs firing `slots` of `schedule` creates, one per slot, due at its slot (so
    `run_at` tells which slot a job is for). `max_retries` applies when the schedule has
    none of its own. Each holds its slot's `slot_key`, so even a slot fired twice would
    store one job while the first is active. The one place slot jobs are built."""
    retries = schedule.max_retries if schedule.max_retries is not None else max_retries
    return [
        transitions.new_job(
            job_id=new_job_id(),
            topic=schedule.topic,
            payload=schedule.payload,
            run_at=slot,
            max_retries=retries,
            priority=schedule.priority,
            unique_key=slot_key(schedule.name, slot),
            now=now,
        )
        for slot in slots
    ]


def slot_key(name: str, slot: datetime) -> str:
    """The unique key of schedule `name`'s job for `slot`: `schedule:<name>@<slot, UTC
    RFC 3339>`, or, for a name too long for a key, its SHA-256 in the name's place."""
    when = slot.astimezone(UTC).isoformat().replace("+00:00", "Z")
    key = f"schedule:{name}@{when}"
    if len(key) <= MAX_UNIQUE_KEY_LENGTH:
        return key
    return f"schedule:sha256:{hashlib.sha256(name.encode()).hexdigest()}@{when}"


def schedule_definition(schedule: Schedule) -> dict[str, Any]:
    """The schedule's definition (what `schedule()` sets) as a JSON object, the shape
    the SQL stores keep in one column."""
    return {
        "topic": schedule.topic,
        "payload": schedule.payload,
        "cron": schedule.cron,
        "every_us": None if schedule.every is None else _micros(schedule.every),
        "timezone": schedule.timezone,
        "misfire": schedule.misfire,
        "priority": schedule.priority,
        "max_retries": schedule.max_retries,
    }


def schedule_from_definition(
    name: str,
    definition: Mapping[str, Any],
    *,
    paused: bool,
    next_fire_at: datetime,
    last_fired_at: datetime | None,
    last_job_id: str | None,
    created: datetime,
    updated: datetime,
) -> Schedule:
    """A `Schedule` from a stored definition (`schedule_definition`) and its state."""
    every = definition.get("every_us")
    return Schedule(
        name=name,
        topic=definition["topic"],
        payload=definition.get("payload"),
        cron=definition.get("cron"),
        every=None if every is None else timedelta(microseconds=int(every)),
        timezone=definition.get("timezone", "UTC"),
        misfire=definition.get("misfire", "latest"),
        priority=int(definition.get("priority", 0)),
        max_retries=definition.get("max_retries"),
        paused=bool(paused),
        next_fire_at=next_fire_at,
        last_fired_at=last_fired_at,
        last_job_id=last_job_id,
        created=created,
        updated=updated,
    )
