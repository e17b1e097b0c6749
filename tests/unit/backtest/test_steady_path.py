"""The replay's steady path (issue 12 §4) skips the `levbot` cycles that would do nothing
and runs the bars where nothing can act without calling the policies; the outputs must be
exactly those of running every cycle and every bar in full."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.backtest.policies import PolicyName
from bot.backtest.results import PolicyResult
from bot.backtest.runner import Scenario, run_backtest
from bot.domain.models import MarginMode, Side
from bot.domain.targets import Target
from bot.exchange.sim.prices import PriceSeries, load_funding, load_prices

DATA = Path(__file__).parents[3] / "benchmarks" / "data"
ETH_5M = DATA / "binance_perp_ETH_USDT_5m_2022-06-01_2022-08-01.csv"
ETH_FUNDING = DATA / "binance_perp_ETH_USDT_funding_2022-06-01_2022-08-01.csv"
BTC_1M = DATA / "binance_spot_BTC_USDT_1m_2021-04-20_2021-05-20.csv"


def _slice(series: PriceSeries, start: int, count: int) -> PriceSeries:
    return PriceSeries(series.bars[start : start + count], ())


def _both(scenario: Scenario, series: PriceSeries) -> tuple[dict[str, PolicyResult], ...]:
    funding = load_funding(ETH_FUNDING) if "ETH" in scenario.symbol else ()
    fast = run_backtest(scenario, series, funding)
    full = run_backtest(replace(scenario, steady_path=False), series, funding)
    return fast, full


def _assert_same(fast: dict[str, PolicyResult], full: dict[str, PolicyResult]) -> None:
    assert fast.keys() == full.keys()
    for name in fast:
        assert fast[name].summary() == full[name].summary(), name
        assert fast[name].actions == full[name].actions, name
        assert fast[name].timeline == full[name].timeline, name


LEVBOTS = (PolicyName.LEVBOT, PolicyName.LEVBOT_POLL)


@pytest.mark.parametrize(
    ("side", "margin_mode", "outage"),
    [
        (Side.SHORT, MarginMode.CROSS, None),
        (Side.LONG, MarginMode.ISOLATED, None),
        # The daemon down 2022-06-10 12:00 to 2022-06-11 00:00.
        (Side.LONG, MarginMode.CROSS, (1_654_862_400_000, 1_654_905_600_000)),
    ],
)
def test_replay_when_steady_path_on_5m_bars_then_outputs_equal_the_full_cycles(
    side: Side, margin_mode: MarginMode, outage: tuple[int, int] | None
) -> None:
    # ETH perp 5m from 2022-06-10, 700 bars: de-levering, stops, the stream, and a level-2
    # amount exactly on a step boundary (which once flipped a step with the mark, so the
    # full cycles re-placed it while the steady path kept it: see test_backstop.py).
    series = _slice(load_prices(ETH_5M), 2_600, 700)
    scenario = Scenario(
        symbol="ETH/USDT:USDT", side=side, target=Target(D(10), D(8), D(12)),
        margin_mode=margin_mode, policies=LEVBOTS, outage=outage,
    )  # fmt: skip
    fast, full = _both(scenario, series)
    assert any(full[PolicyName.LEVBOT].actions)  # the window exercises the protection
    _assert_same(fast, full)


def test_replay_when_steady_path_on_1m_bars_with_a_5m_cycle_then_outputs_equal() -> None:
    # The stream reads a cycle's triggers on the four bars between polls: no skipping there.
    series = _slice(load_prices(BTC_1M), 40_200, 1_200)  # 2021-05-18/19: the May crash
    scenario = Scenario(
        symbol="BTC/USDT:USDT", side=Side.LONG, target=Target(D(10), D(8), D(12)),
        interval_ms=300_000, policies=LEVBOTS, release_excess=False,
    )  # fmt: skip
    fast, full = _both(scenario, series)
    _assert_same(fast, full)


@pytest.mark.parametrize("side", [Side.LONG, Side.SHORT])
def test_replay_when_steady_bars_skip_the_baselines_then_outputs_equal_every_bar_called(
    side: Side,
) -> None:
    # ETH perp 5m with funding, 2022-06-10 .. 06-14 at target 5: periodic rebalances
    # daily, auto-margin adds margin near liquidation, `none` is liquidated (long).
    series = _slice(load_prices(ETH_5M), 2_600, 1_200)
    scenario = Scenario(
        symbol="ETH/USDT:USDT", side=side, target=Target(D(5), D(4), D(6)),
        policies=(PolicyName.NONE, PolicyName.AUTO_MARGIN, PolicyName.PERIODIC),
    )  # fmt: skip
    fast, full = _both(scenario, series)
    assert full[PolicyName.PERIODIC].actions  # the window makes the baselines act
    if side is Side.LONG:
        assert full[PolicyName.AUTO_MARGIN].actions
        assert full[PolicyName.NONE].liquidation_time is not None
    _assert_same(fast, full)
