"""The benchmark entry point runs end to end on tiny sizes (a smoke test, not a benchmark)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmarks_print_the_table_on_sqlite(tmp_path: Path) -> None:
    """`python -m benchmarks` on SQLite with tiny sizes prints every workload's rows."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--store",
            "sqlite",
            "--jobs",
            "200",
            "--scale",
            "0,1000",
            "--w3-seconds",
            "0.5",
            "--sqlite-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "| Store | Workload | Figure | Floor | Ratio | Target | Met |" in out
    for workload in (
        "W1 enqueue 200 one by one",
        "W2 drain 200",
        "W2 drain 200 (pool 10), table not analyzed",
        "W2 worker peak RSS",
        "W3 wake-up, same process",
        "Scale: claim p50 at 1,000 finished",
    ):
        assert workload in out
    assert "Targets met:" in out
