"""The exactly-once check of the multi-process schedule tests, shared by both stores."""

from __future__ import annotations

from datetime import datetime, timedelta


def check_one_job_per_slot(
    fired: list[tuple[datetime, str]], *, every: timedelta, at_least: int
) -> None:
    """`fired` is (slot, job id) of every job a schedule made, in slot order: its slots
    are whole multiples of `every`, each there once, none skipped between the first
    and the last, and there are at least `at_least` of them."""
    slots = [slot for slot, _ in fired]
    assert len(slots) >= at_least, f"only {len(slots)} slots fired"
    assert len(set(slots)) == len(slots), "a slot fired twice"
    assert len({job_id for _, job_id in fired}) == len(fired)
    epoch = datetime(1970, 1, 1, tzinfo=slots[0].tzinfo)
    assert all((slot - epoch) % every == timedelta(0) for slot in slots)
    assert slots == [slots[0] + i * every for i in range(len(slots))], "a slot was skipped"
