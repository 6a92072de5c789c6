"""Figures, their floors and targets, and the Markdown table they print as.

Absolute numbers drift between runs on a shared machine, so every throughput figure
is shown next to a floor measured in the same run and as a ratio to it; the targets
are judged on those ratios (or on absolute latencies where the issue sets them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One measured value, optionally with the floor it is compared to and a target."""

    store: str
    workload: str
    value: float
    unit: str
    #: The raw-driver figure for the same work in the same run (higher is better).
    floor: float | None = None
    floor_name: str = ""
    #: Human text of the target, e.g. ">= 0.7x floor" or "<= 5 ms".
    target: str = ""
    #: Whether the target is met; None when there is no target for this figure.
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        """The figure divided by its floor."""
        if self.floor is None or self.floor == 0:
            return None
        return self.value / self.floor


def at_least(ratio: float | None, wanted: float) -> bool | None:
    """Whether a ratio reaches `wanted` (None when there is nothing to compare)."""
    return None if ratio is None else ratio >= wanted


def _number(value: float, unit: str) -> str:
    if unit in ("jobs/s", "us"):
        return f"{value:,.0f} {unit}"
    if value >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.2f} {unit}"


def table(figures: Sequence[Figure]) -> str:
    """The Markdown table of `figures`, in order."""
    lines = [
        "| Store | Workload | Figure | Floor | Ratio | Target | Met |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for f in figures:
        floor = f"{_number(f.floor, f.unit)} ({f.floor_name})" if f.floor is not None else ""
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else ""
        met = {None: "", True: "met", False: "**missed**"}[f.met]
        lines.append(
            f"| {f.store} | {f.workload} | {_number(f.value, f.unit)} | {floor} | {ratio}"
            f" | {f.target} | {met} |"
        )
    return "\n".join(lines)


def summary(figures: Sequence[Figure]) -> str:
    """One line: how many targets were met and which were missed."""
    judged = [f for f in figures if f.met is not None]
    missed = [f"{f.store} {f.workload}" for f in judged if not f.met]
    line = f"Targets met: {len(judged) - len(missed)}/{len(judged)}."
    if missed:
        line += " Missed: " + "; ".join(missed) + "."
    return line
