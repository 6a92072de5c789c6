"""W1's floor and store take turns: every job once on each side, ABBA order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from benchmarks._workloads import W1_ROUNDS, _in_turns


def _recorder(
    side: str, calls: list[tuple[str, int, int]]
) -> Callable[[int, int], Awaitable[float]]:
    async def run(first: int, count: int) -> float:
        calls.append((side, first, count))
        return float(count)

    return run


@pytest.mark.parametrize(("n", "unit"), [(20_000, 1), (20_000, 1000), (7, 1), (2500, 1000), (1, 1)])
def test_each_side_covers_every_job_once_in_alternating_rounds(n: int, unit: int) -> None:
    calls: list[tuple[str, int, int]] = []
    floor_s, ours_s = asyncio.run(
        _in_turns(n, _recorder("floor", calls), _recorder("ours", calls), unit=unit)
    )
    assert floor_s == ours_s == n
    for side in ("floor", "ours"):
        mine = [(first, count) for name, first, count in calls if name == side]
        covered = [i for first, count in mine for i in range(first, first + count)]
        assert covered == list(range(n))
        assert all(first % unit == 0 for first, _ in mine)
    rounds = len(calls) // 2
    assert rounds == min(W1_ROUNDS, -(-n // unit))
    order = [calls[2 * r][0] for r in range(rounds)]
    assert order == ["floor" if r % 2 == 0 else "ours" for r in range(rounds)]
