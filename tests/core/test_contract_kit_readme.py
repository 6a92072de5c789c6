"""The jobs-core README's contract-kit snippet runs as written, in both asyncio modes.

The snippet is taken from the README itself, written into an empty project with its
own pytest configuration, and run in a subprocess with this interpreter.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from jobs_core.testing.contract import JobStoreContract

README = Path(__file__).resolve().parents[2] / "packages" / "jobs-core" / "README.md"


def _snippet() -> str:
    """The first Python block of the README's "Test aids" section."""
    text = README.read_text()
    section = text.split("## Test aids", 1)[1].split("\n## ", 1)[0]
    blocks: list[str] = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert blocks, "no python snippet under 'Test aids'"
    return blocks[0]


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_contract_kit_snippet_passes_as_written(mode: str, tmp_path: Path) -> None:
    """Strict is pytest-asyncio's default; the state machine (about 15 s, no asyncio
    fixtures involved) runs once, in strict mode only."""
    model = mode == "strict"
    (tmp_path / "test_my_store.py").write_text(_snippet())
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.pytest.ini_options]\nasyncio_mode = "{mode}"\n'
        'asyncio_default_fixture_loop_scope = "function"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"]
        + ([] if model else ["-k", "not Model"]),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    examples = [name for name in dir(JobStoreContract) if name.startswith("test_")]
    assert f"{len(examples) + model} passed" in output, output
