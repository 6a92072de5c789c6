"""A network partition between a worker's host and PostgreSQL, while it runs a leased job.

Two hosts (network namespaces, `tests.faults.netns`) each run a worker process that
reaches the database through its own link. A 5 s job is leased for 1 s at a time. Once
it runs on one host and that host has renewed its lease over the link, the link is cut:
the host's packets are dropped both ways, so its next renewal hangs, unanswered and
without an error. The other host must take the job back once the lease runs out, run it
and complete it, while the cut host, by its own clock, stops the handler when its lease
ends (it cannot tell whether the renewal got through, so it must assume not) and
records nothing. When the link comes back, what the cut host sent during the cut (its
late renewal among it) reaches the database once TCP retransmits it (the test waits
until the host's sockets hold no unacknowledged bytes) and changes nothing; the renewal
and the completion it would send next, replayed under its last token, are refused as
well. The other host's completion stands, and the cut host goes back to work.

The proxy of the cut host keeps its connections to PostgreSQL open during the cut (as
the server keeps a silent client's connections until TCP keepalive gives up), so any
transaction that host had open stays open. That does not block the rescue: every store
call a worker makes is one autocommitted statement (claim, renew, guarded update), or
a read that takes no row locks (the rescuer's `expired`), so a hung connection holds no
lock the other host needs. The test therefore cuts only the link (`host.cut()`), with no
`proxy.down()` and no server-side timeouts: the partition stays a pure one, and a rescue
blocked by a lock would show as a failed bound.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import attrs
import pytest

from jobs_core import Job, Jobs, JobStatus
from jobs_core import _transitions as transitions
from jobs_postgres import PostgresStore
from tests.faults import netns
from tests.faults.fleet import Fleet, publish
from tests.faults.ledger import Renewal, check
from tests.faults.pg import fresh_database
from tests.faults.runs import (
    LEASE,
    RERUN_BOUND,
    WORKER_ARGS,
    finished,
    in_ledger,
    new_ledger,
    nth_run,
    renewed_run,
    snapshot,
    until,
)

WORK = 5.0
#: How late, by the ledger's clock, a handler may stop after the lease it held ended.
STOP_SLACK = 0.5


def _target(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 5432


def _unsent(host: netns.Host) -> int:
    """Bytes the host's sockets to its database link hold that the far end has not yet
    acknowledged (what a cut holds back)."""
    out = subprocess.run(
        host.command(["ss", "-tnH", "state", "all", "dst", f"{host.gateway}:{host.port}"]),
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    return sum(int(line.split()[2]) for line in out.splitlines() if line.strip())


def _host_fleet(host: netns.Host, url: str, ledger: Path, tmp: Path) -> Fleet:
    """One worker process inside `host`, on the database through `host`'s link."""
    fleet = Fleet(
        db=host.url(url),
        ledger=ledger,
        logs=tmp / host.name,
        size=1,
        args=WORKER_ARGS,
        wrap=host.command,
    )
    fleet.start()
    return fleet


@pytest.mark.fault
@pytest.mark.fault_postgres
@pytest.mark.timeout(180)
async def test_a_partitioned_hosts_job_is_rescued_and_its_late_writes_are_refused(
    tmp_path: Path,
) -> None:
    """Cut the host running a renewed job: rescued elsewhere, stopped there, fenced."""
    ledger = new_ledger(tmp_path / "ledger.db")
    with fresh_database() as url, netns.hosts(2, target=_target(url)) as hosts:
        jobs = Jobs(PostgresStore(url))  # the test's own view, outside any host
        fleets = {host.name: _host_fleet(host, url, ledger, tmp_path) for host in hosts}
        try:
            for fleet in fleets.values():
                fleet.wait_ready(fleet.procs[0], 60.0)
            job = await jobs.enqueue("chaos", {"seconds": WORK})
            # Whichever host claims the job is the one cut off (the hosts are alike).
            first = await in_ledger(
                ledger, "a run renewed over its link", renewed_run(job.id, 1), timeout=30
            )
            (cut,) = [h for h in hosts if fleets[h.name].procs[0].pid == first.pid]
            (other,) = [h for h in hosts if h is not cut]
            cut_pid, other_pid = first.pid, fleets[other.name].procs[0].pid
            cut.cut()
            cut_at = time.time()

            second = await in_ledger(
                ledger, "the job's run on the other host", nth_run(job.id, 2), timeout=30
            )
            done = await finished(jobs, job.id, timeout=WORK + 30)
            during = snapshot(ledger)
            held_back = _unsent(cut)

            cut.restore()
            restored_at = time.time()
            # What the cut host sent during the cut (its late renewal among it) reaches
            # the database when TCP next retransmits; wait for that before looking.
            await until(
                "the cut host's held-back bytes delivered",
                lambda: _unsent(cut) == 0 or None,
                timeout=60,
                every=0.1,
            )
            delivered_after = time.time() - restored_at
            # The other host stops; the cut one must now run a new job by itself, which
            # it can only once its held connections or new ones work again.
            other_code = fleets[other.name].stop()
            after = await jobs.enqueue("chaos", {"seconds": 0.05})
            afterwards = await finished(jobs, after.id, timeout=60)
            back_after = time.time() - restored_at
            final = await jobs.get(job.id)
            held = max(
                (r for r in during.renewals_of(job.id, cut_pid) if r.applied),
                key=lambda r: r.sent_at,
            )
            late = await _late_writes(url, final, held)
            dead = fleets[cut.name].dead()
        finally:
            codes = {name: fleet.stop() for name, fleet in fleets.items()}
        s = snapshot(ledger)
        report = check(
            enqueued=[job.id, after.id],
            jobs=[final, afterwards],
            stats=await jobs.stats(),
            executions=s.executions,
            outcomes=s.outcomes,
            renewals=s.renewals,
        )
        await jobs.aclose()

    first = during.runs(job.id)[0]  # as it ended (the one above was read as it began)
    lease_end = during.lease_end(first)  # the strict view: the unanswered renewal counts
    held_until = max(first.locked_until, held.locked_until)  # as the cut host knew it
    cut_renewals = during.renewals_of(job.id, cut_pid)
    publish(
        "partition-postgres",
        {
            **report.figures,
            "work_s": WORK,
            "lease_s": LEASE,
            "cut_after_start_s": cut_at - first.started_at,
            "lease_end_after_cut_s": lease_end - cut_at,
            "cut_host_stopped_after_its_lease_end_s": (
                None if first.stopped_at is None else first.stopped_at - held_until
            ),
            "cut_host_returned_after_its_lease_end_s": (
                None if first.finished_at is None else first.finished_at - held_until
            ),
            "rerun_after_cut_s": second.started_at - cut_at,
            "rerun_bound_s": RERUN_BOUND,
            "cut_host_renewals_sent_during_cut": sum(1 for r in cut_renewals if r.sent_at > cut_at),
            "cut_host_bytes_held_back": held_back,
            "held_back_delivered_after_restore_s": delivered_after,
            "cut_host_back_at_work_after_restore_s": back_after,
            "late_writes_applied": late,
            "worker_exit_codes": codes,
        },
    )
    report.assert_ok()
    # The other host took the job back about a lease after the cut, and completed it.
    assert second.pid == other_pid
    assert second.started_at - cut_at < RERUN_BOUND
    assert done.status is JobStatus.COMPLETED
    assert done.retries == 1
    (completion,) = [o for o in during.outcomes_of(job.id) if o.applied]
    assert (completion.kind, completion.pid) == ("completed", other_pid)
    # The cut host stopped its handler when its lease ended, before the job ran again,
    # and recorded nothing for it; no renewal sent during the cut was ever applied.
    assert first.finished_at is None, "the cut host's handler ran on past its lease"
    assert first.stopped_at is not None
    assert first.stopped_at <= held_until + STOP_SLACK
    assert during.lease_violations(job.id) == []
    assert s.outcomes_of(job.id, cut_pid) == []
    assert not [r for r in s.renewals_of(job.id, cut_pid) if r.sent_at > cut_at and r.applied]
    assert held_back > 0, "nothing was held up by the cut: the partition was not real"
    # After the partition: the late renewal and completion were refused, the other
    # host's completion stands, and the cut host works again.
    assert late == {"renewal": False, "completion": False}
    assert final == done
    assert afterwards.status is JobStatus.COMPLETED
    assert [e.pid for e in s.runs(after.id)] == [cut_pid]
    assert dead == []
    assert other_code == [0]
    assert codes[cut.name] == [0]


async def _late_writes(url: str, final: Job, held: Renewal) -> dict[str, bool]:
    """Whether the store applies the renewal and the completion the cut host would send
    next, arriving late: guarded by the token of its last renewed lease (`held`), and
    written as of when that lease was valid, so the host's own clock would have let
    them go (as it did for the renewal the partition held up)."""
    sent = datetime.fromtimestamp(held.sent_at, UTC)
    as_held = attrs.evolve(
        final,
        status=JobStatus.PROCESSING,
        lock_token=held.new_token,
        locked_until=datetime.fromtimestamp(held.locked_until, UTC),
        updated=sent,
        retries=0,
        last_error=None,
    )
    renewal = transitions.renew(
        as_held,
        token=held.new_token,
        now=sent,
        lease=timedelta(seconds=LEASE),
        new_token=uuid.uuid4().hex,
    )
    completion = transitions.complete(as_held, token=held.new_token, now=sent)
    store = PostgresStore(url)
    try:
        (renewed,) = await store.renew([transitions.update(as_held, renewal)])
        (completed,) = await store.update([transitions.update(as_held, completion)])
    finally:
        await store.close()
    return {"renewal": renewed is not None, "completion": completed}
