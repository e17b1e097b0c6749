"""`run_backtest` replays the daemon's policy in a forked child while this process runs
the others: the results must be those of replaying each alone, to the last digit and
exponent, and the progress must count every bar of every policy."""

from __future__ import annotations

from collections import Counter
from dataclasses import astuple
from decimal import Decimal as D
from pathlib import Path

from bot.backtest.policies import PolicyName
from bot.backtest.results import PolicyResult
from bot.backtest.runner import Scenario, run_backtest
from bot.domain.models import Side
from bot.domain.targets import Target
from bot.exchange.sim.prices import PriceSeries, load_funding, load_prices

DATA = Path(__file__).parents[3] / "benchmarks" / "data"
ETH_5M = DATA / "binance_perp_ETH_USDT_5m_2022-06-01_2022-08-01.csv"
ETH_FUNDING = DATA / "binance_perp_ETH_USDT_funding_2022-06-01_2022-08-01.csv"
POLICIES = (PolicyName.LEVBOT, PolicyName.PERIODIC, PolicyName.NONE)


def series() -> PriceSeries:
    return PriceSeries(load_prices(ETH_5M).bars[2_600:3_200], ())


def scenario(*policies: str) -> Scenario:
    return Scenario(
        symbol="ETH/USDT:USDT", side=Side.LONG, target=Target(D(10), D(8), D(12)),
        policies=policies,
    )  # fmt: skip


def exact(result: PolicyResult) -> list[tuple[str, ...]]:
    """Every timeline and action value as its string: equal Decimals with another
    exponent print differently (and the CSVs would differ)."""
    rows = [*result.timeline, *result.actions]
    return [tuple(str(value) for value in astuple(row)) for row in rows]


def test_run_backtest_when_a_policy_replays_in_a_child_then_results_equal_alone() -> None:
    bars, funding = series(), load_funding(ETH_FUNDING)

    together = run_backtest(scenario(*POLICIES), bars, funding)

    assert list(together) == list(POLICIES)
    for name in POLICIES:
        alone = run_backtest(scenario(name), bars, funding)[name]
        assert together[name] == alone, name
        assert exact(together[name]) == exact(alone), name
    assert together[PolicyName.LEVBOT].actions  # the window makes the daemon act


def test_run_backtest_when_forked_then_progress_counts_every_bar_of_every_policy() -> None:
    bars = series()
    seen: Counter[str] = Counter()

    results = run_backtest(scenario(*POLICIES), bars, on_bar=lambda name: seen.update([name]))

    assert set(seen) == set(POLICIES)
    for name in POLICIES:
        # Every bar counts once; a replay stops at the bar that liquidates it.
        result = results[name]
        expected = len(bars.bars) if result.liquidation_time is None else result.bars + 1
        assert seen[name] == expected, name
    assert results[PolicyName.LEVBOT].liquidation_time is None
