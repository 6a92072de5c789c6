"""docs/architecture.md names real places: every file path it cites exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
_PATH = re.compile(r"`([\w./<>-]+\.(?:py|md|js|sql|html))`")


def _exists(cited: str) -> bool:
    if (ROOT / cited).exists():
        return True
    # Short forms: `_worker.py` or `jobs_sqlite/_rows.py` name a module inside a package.
    return any(ROOT.glob(f"packages/*/src/**/{cited}"))


def test_every_cited_path_exists() -> None:
    cited = sorted(set(_PATH.findall(DOC.read_text())))
    assert len(cited) > 20, cited  # the pattern still finds the doc's paths
    missing = [path for path in cited if not _exists(path)]
    assert missing == []
