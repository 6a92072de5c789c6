"""Each package's public API is what its `__init__.py` exports, and its README names every
one of those (in a code span), so nothing public goes undocumented."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "jobs-core": "jobs_core",
    "jobs-sqlite": "jobs_sqlite",
    "jobs-postgres": "jobs_postgres",
    "jobs-http": "jobs_http",
}


@pytest.mark.parametrize(("folder", "module"), sorted(PACKAGES.items()))
def test_the_readme_names_every_exported_name(folder: str, module: str) -> None:
    exported = importlib.import_module(module).__all__
    assert exported, f"{module} exports nothing"
    readme = (ROOT / "packages" / folder / "README.md").read_text()
    prose = re.sub(r"^```.*?^```", "", readme, flags=re.MULTILINE | re.DOTALL)
    spans = " ".join(re.findall(r"`([^`]+)`", prose))
    missing = [name for name in exported if not re.search(rf"\b{re.escape(name)}\b", spans)]
    assert missing == [], f"packages/{folder}/README.md does not name {missing}"
