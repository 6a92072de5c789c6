"""Write docs/lifecycle.md: the job state diagram, drawn from the transition table itself.

Run `uv run python docs/make_lifecycle.py`; tests/core/test_lifecycle_doc.py fails when the
committed file and the table disagree.
"""

from __future__ import annotations

from pathlib import Path

from jobs_core import _transitions as transitions

TARGET = Path(__file__).with_name("lifecycle.md")

#: When each event happens (its guard); the effects come from the table itself.
WHEN = {
    "claim": "due (run_at <= now)",
    "renew": "same token, lease valid",
    "complete": "same token, lease valid",
    "retry": "failed attempt or lease expired, retries left",
    "give_up": "failed attempt or lease expired, no retries left, or the handler raised GiveUp",
    "release": "worker stopping; attempt not counted",
    "snooze": "the handler raised Snooze(delay); attempt not counted",
    "abort": "worker stopped the handler at a cancel request, or its lease ran out",
    "cancel": "client; a running job keeps its lease until its worker stops it",
    "requeue": "client",
    "delete": "client",
}


def effects(move: transitions.Move) -> str:
    """The fields a move changes, each as `field = its new value` (from `FIELD_RULES`)."""
    changes = (
        f"`{field} = {transitions.FIELD_RULES[field].effects[effect].replace('job.', '')}`"
        for field, effect in move.effects
    )
    return ", ".join(changes) or ("row removed" if move.target is None else "status only")


def render() -> str:
    """The Markdown page with a Mermaid diagram of `TRANSITIONS`, and its effects table."""
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
    rows = []
    for status, row in transitions.TRANSITIONS.items():
        for event, move in row.items():
            end = "[*]" if move.target is None else str(move.target)
            lines.append(f"    {status.value} --> {end}: {event.value} ({WHEN[event]})")
            target = "(gone)" if move.target is None else move.target.value
            rows.append(f"| {status.value} | {event.value} | {target} | {effects(move)} |")
    lines += [
        "```",
        "",
        "Every move sets `updated` to now; fields a move does not name keep their value."
        " `token` is a fresh lock token, `lease` the lease's length, `error` the"
        " attempt's message.",
        "",
        "| from | event | to | effects |",
        "|---|---|---|---|",
        *rows,
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET}")
