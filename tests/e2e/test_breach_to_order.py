"""A mark past the trigger at the paper venue's websocket puts the reduce-only order at
its order endpoint within a second (issue 10): the benchmark's path, a few trials."""

from __future__ import annotations

from pathlib import Path

from benchmarks.breach_to_order import GOAL_MS, measure_breaches


async def test_breach_to_order_when_mark_crosses_at_the_venue_then_order_within_a_second(
    tmp_path: Path,
) -> None:
    figures = await measure_breaches(tmp_path, trials=3, on_change=True)
    assert figures.trials == 3
    assert figures.worst_ms < GOAL_MS
