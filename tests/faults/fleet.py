"""A fleet of worker processes under a supervisor, and the figures the fault tests print.

The supervisor is the test itself: it starts `tests.faults.worker_main` processes, can
`SIGKILL` one and start its replacement at once, and stops them all with `SIGTERM` at
the end (checking each exits 0). Seeds, timings and figures go to stdout and to
`artifacts/faults/<name>.json`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "faults"


def seed() -> int:
    """The chaos seed: `JOBS_FAULT_SEED` to replay a run, else a fresh one (printed)."""
    raw = os.environ.get("JOBS_FAULT_SEED")
    value = int(raw) if raw else random.SystemRandom().randrange(2**32)
    print(f"chaos seed: {value} (replay with JOBS_FAULT_SEED={value})")
    return value


def scale() -> float:
    """`JOBS_FAULT_SCALE` multiplies job counts and rates (1.0 = the plan's figures)."""
    return float(os.environ.get("JOBS_FAULT_SCALE", "1.0"))


@attrs.define
class Kill:
    pid: int
    at: float


@attrs.define
class Fleet:
    """Worker processes on one store and one ledger.

    `wrap` turns each worker's command line into the one to run, e.g. `Host.command` of
    `tests.faults.netns` to start it inside that host's network namespace (as an exec,
    so the pid is the worker's).
    """

    db: str
    ledger: Path
    logs: Path
    size: int
    args: Sequence[str] = ()
    wrap: Callable[[Sequence[str]], list[str]] | None = None
    procs: list[subprocess.Popen[bytes]] = attrs.field(factory=list)
    kills: list[Kill] = attrs.field(factory=list)
    exits: list[tuple[int, int | None]] = attrs.field(factory=list)
    _files: list[Any] = attrs.field(factory=list)

    def spawn(self, index: int, *extra: str) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        out = (self.logs / f"worker-{index}.log").open("ab")
        self._files.append(out)
        argv = [
            sys.executable,
            "-m",
            "tests.faults.worker_main",
            "--db",
            self.db,
            "--ledger",
            str(self.ledger),
            *self.args,
            *extra,
        ]
        return subprocess.Popen(
            argv if self.wrap is None else self.wrap(argv),
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def start(self) -> None:
        self.procs = [self.spawn(i) for i in range(self.size)]

    def ready(self, proc: subprocess.Popen[bytes]) -> bool:
        return f"worker {proc.pid} ready" in self.log_text()

    def kill_one(self, rng: random.Random) -> Kill:
        """SIGKILL a random worker (one that is up, if any) and start its replacement."""
        up = [i for i, p in enumerate(self.procs) if self.ready(p)]
        index = rng.choice(up) if up else rng.randrange(len(self.procs))
        victim = self.procs[index]
        victim.send_signal(signal.SIGKILL)
        at = time.time()
        victim.wait()
        kill = Kill(pid=victim.pid, at=at)
        self.kills.append(kill)
        self.procs[index] = self.spawn(index)
        return kill

    def start_ready(self, timeout: float = 60.0) -> Fleet:
        """`start`, then wait until every worker is ready; the fleet, for chaining."""
        self.start()
        for proc in self.procs:
            self.wait_ready(proc, timeout)
        return self

    def dead(self) -> list[tuple[int, int | None]]:
        """Workers that exited by themselves (pid, code): there must be none."""
        return [(p.pid, p.returncode) for p in self.procs if p.poll() is not None]

    def wait_ready(self, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
        """Wait until `proc` has its SIGTERM handler (it logs "worker <pid> ready")."""
        deadline = time.monotonic() + timeout
        marker = f"worker {proc.pid} ready"
        while proc.poll() is None and marker not in self.log_text():
            if time.monotonic() > deadline:
                raise AssertionError(f"worker {proc.pid} never became ready")
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> list[int | None]:
        """SIGTERM every worker (once it is ready) and wait; their exit codes (0 = clean)."""
        for p in self.procs:
            self.wait_ready(p)
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for p in self.procs:
            try:
                codes.append(p.wait(timeout))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                codes.append(None)
        for f in self._files:
            f.close()
        return codes

    def log_text(self) -> str:
        return "".join(
            path.read_text(errors="replace") for path in sorted(self.logs.glob("worker-*.log"))
        )


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def publish(name: str, figures: dict[str, Any]) -> None:
    """Print the figures and keep them in artifacts/faults/<name>.json."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    figures = {"test": name, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(f"\n{name} figures:")
    for key, value in figures.items():
        shown = f"{value:.3f}" if isinstance(value, float) else value
        print(f"  {key}: {shown}")
