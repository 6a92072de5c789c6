"""Write docs/lifecycle.md: the job state diagram, drawn from the transition table itself.

Run `uv run python docs/make_lifecycle.py`; tests/core/test_lifecycle_doc.py fails when the
committed file and the table disagree.
"""

from __future__ import annotations

from pathlib import Path

from jobs_core import _transitions as transitions

TARGET = Path(__file__).with_name("lifecycle.md")

NOTES = {
    "claim": "claim (run_at <= now): lease + new lock token",
    "complete": "complete (same token, lease valid)",
    "retry": "fail or lease expired, retries left: retries+1, run_at = now + backoff",
    "give_up": "fail or lease expired, no retries left",
    "release": "release (worker stopping; attempt not counted)",
    "requeue": "requeue: retries = 0, due now",
    "delete": "delete",
}


def render() -> str:
    """The Markdown page with a Mermaid diagram of `TRANSITIONS`."""
    lines = [
        "# Job lifecycle",
        "",
        "Generated from `jobs_core._transitions.TRANSITIONS` by `docs/make_lifecycle.py`;"
        " do not edit by hand.",
        "",
        "```mermaid",
        "stateDiagram-v2",
        "    [*] --> pending: enqueue",
    ]
    for status, row in transitions.TRANSITIONS.items():
        for event, target in row.items():
            end = "[*]" if target == transitions.DELETED else str(target)
            lines.append(f"    {status.value} --> {end}: {NOTES[event]}")
    lines += ["```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET}")
