"""The lifecycle diagram in docs/ is the one the transition table draws."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_lifecycle_doc_matches_the_table() -> None:
    """Regenerate with `uv run python docs/make_lifecycle.py` after changing the table."""
    spec = importlib.util.spec_from_file_location("make_lifecycle", DOCS / "make_lifecycle.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (DOCS / "lifecycle.md").read_text() == module.render()
