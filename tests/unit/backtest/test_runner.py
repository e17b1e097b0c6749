"""The replay's protection layers on small synthetic bars: where the stream runs the cycle,
where a resting stop fills, what an outage leaves standing, and the rows it all writes."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from bot.backtest.policies import POLICY_NAMES, PolicyName
from bot.backtest.results import ActionRow, PolicyResult
from bot.backtest.runner import Scenario, run_backtest
from bot.domain.models import Side
from bot.domain.stops import BackstopSettings
from bot.domain.targets import Target
from bot.exchange.sim.prices import Bar, PriceSeries

MINUTE = 60_000
T0 = 1_621_382_400_000  # 2021-05-19 00:00 UTC
SLIPPAGE = D("0.0005")
# 10x long of 1000 BTC contracts at 100 on 10000: leverage 12 at 98.18 (the stream's
# trigger), liquidation near 90.4. The test ladder rests 2% short of liquidation, so a
# gap can open between the first stop and liquidation.
TEN_X = Target(D(10), D(8), D(12))
LADDER = BackstopSettings(liquidation_buffer=D("0.02"))
FLAT = (100, 100, 100, 100)


def bars(*ohlc: tuple[float, float, float, float]) -> PriceSeries:
    return PriceSeries(
        tuple(Bar(T0 + i * MINUTE, *(D(str(x)) for x in row)) for i, row in enumerate(ohlc)),
        (),
    )


def replay(
    series: PriceSeries,
    policies: tuple[str, ...] = (PolicyName.LEVBOT,),
    *,
    side: Side = Side.LONG,
    reserve: D = D(0),
    outage: tuple[int, int] | None = None,
) -> dict[str, PolicyResult]:
    scenario = Scenario(
        symbol="BTC/USDT:USDT", side=side, target=TEN_X, reserve=reserve,
        interval_ms=5 * MINUTE, slippage=SLIPPAGE, policies=policies, backstop=LADDER,
        outage=outage,
    )  # fmt: skip
    return run_backtest(scenario, series)


def rows(result: PolicyResult, kind: str) -> list[ActionRow]:
    return [row for row in result.actions if row.kind == kind]


def leverage_long(price: D) -> D:
    """The test position's leverage at `price`, untouched since the open at 100."""
    return 1000 * price / (10000 + 1000 * (price - 100))


def test_replay_when_the_path_crosses_the_stream_trigger_then_the_cycle_runs_at_the_crossing() -> (
    None
):
    # Minute 3 dips to 97 between polls (0 and 5): only the stream can act there.
    result = replay(bars(FLAT, FLAT, FLAT, (100, 100, 97, 99.5), (99.5, 99.6, 99.4, 99.5)))[
        PolicyName.LEVBOT
    ]
    [trigger] = rows(result, "stream_trigger")
    assert trigger.timestamp == T0 + 3 * MINUTE
    assert D(97) < trigger.price < D(100)  # type: ignore[operator]
    # Where the band's upper edge is: the stream's trigger, not the bar's low.
    assert abs(leverage_long(trigger.price) - 12) < D("0.001")  # type: ignore[arg-type]
    assert trigger.amount == 0 and trigger.side == "below" and "12" in trigger.reason
    [order] = rows(result, "reduce_order")
    assert order.timestamp == trigger.timestamp
    assert order.price == trigger.price * (1 - SLIPPAGE)  # type: ignore[operator]
    assert result.actions.index(trigger) < result.actions.index(order)
    # The cycle's state at the crossing is on the timeline, at the crossing mark.
    assert [r.price for r in result.timeline if r.timestamp == trigger.timestamp] == [trigger.price]


def test_replay_when_polling_only_then_the_dip_between_polls_goes_unanswered() -> None:
    result = replay(
        bars(FLAT, FLAT, FLAT, (100, 100, 97, 99.5), (99.5, 99.6, 99.4, 99.5)),
        (PolicyName.LEVBOT_POLL,),
    )[PolicyName.LEVBOT_POLL]
    assert result.actions == []
    assert result.summary()["stream_triggers"] == 0
    assert result.summary()["backstop_orders"] == 0


def ladder_top() -> D:
    """The first stop's trigger, as a slow slide that fills it reports."""
    slide = bars(FLAT, *[(100 - i, 100 - i, 99 - i, 99 - i) for i in range(12)])
    result = replay(slide, outage=(T0 + MINUTE, T0 + 60 * MINUTE))[PolicyName.LEVBOT]
    first = rows(result, "backstop_fill")[0]
    return D(first.reason.split(" at ")[1].split(" ")[0])


def test_replay_when_a_bar_opens_past_a_resting_stop_then_it_fills_at_the_open() -> None:
    top = ladder_top()
    gap_open = top - D("0.5")
    result = replay(bars(FLAT, (gap_open, gap_open, gap_open - D("0.2"), gap_open)))[
        PolicyName.LEVBOT
    ]
    fill = rows(result, "backstop_fill")[0]
    assert fill.timestamp == T0 + MINUTE
    assert fill.price == gap_open * (1 - SLIPPAGE)
    assert "gap" in fill.reason
    # The stop at the venue went first; the stream's cycle ran at the same open after it.
    trigger = rows(result, "stream_trigger")[0]
    assert trigger.price == gap_open
    assert result.actions.index(fill) < result.actions.index(trigger)
    summary = result.summary()
    assert summary["liquidated"] is False
    assert summary["backstop_fills"] >= 1
    assert summary["fees_paid"] >= float(fill.fee)


def test_replay_when_the_daemon_is_down_then_only_the_resting_stop_acts() -> None:
    top = ladder_top()
    # The mark slides from 100 through the band edge, the emergency ratio and the first
    # stop between the polls at minutes 5 and 10, which the outage swallows.
    slide = [(100 - i, 100 - i, 99 - i, 99 - i) for i in range(12)]
    outage = (T0 + MINUTE, T0 + 60 * MINUTE)
    result = replay(bars(FLAT, *slide), outage=outage)[PolicyName.LEVBOT]
    inside = [row for row in result.actions if outage[0] <= row.timestamp < outage[1]]
    assert inside and {row.kind for row in inside} == {"backstop_fill"}
    fill = inside[0]
    assert fill.price == top * (1 - SLIPPAGE)
    assert "gap" not in fill.reason
    assert result.summary()["liquidated"] is False
    # The poll's schedule still samples the state during the outage (nothing acted).
    assert [r.timestamp for r in result.timeline] == [T0, T0 + 5 * MINUTE, T0 + 10 * MINUTE]
    # Without the ladder the same outage is fatal.
    polled = replay(bars(FLAT, *slide), (PolicyName.LEVBOT_POLL,), outage=outage)
    assert polled[PolicyName.LEVBOT_POLL].summary()["liquidated"] is True


def test_replay_when_short_then_the_stream_watches_the_high() -> None:
    result = replay(
        bars(FLAT, FLAT, (100, 103, 100, 101), (101, 101, 100.5, 101)), side=Side.SHORT
    )[PolicyName.LEVBOT]
    [trigger] = rows(result, "stream_trigger")
    assert trigger.side == "above" and D(100) < trigger.price < D(103)  # type: ignore[operator]
    [order] = rows(result, "reduce_order")
    assert order.side == "buy" and order.price == trigger.price * (1 + SLIPPAGE)  # type: ignore[operator]


def test_replay_when_default_policies_then_all_five_report_the_new_counts() -> None:
    results = replay(bars(FLAT, FLAT, (100, 100, 97, 99.5)), POLICY_NAMES, reserve=D(5000))
    assert list(results) == [
        "levbot", "levbot-poll", "none", "auto-margin", "periodic",
    ]  # fmt: skip
    for result in results.values():
        summary = result.summary()
        assert {"backstop_fills", "stream_triggers", "backstop_orders"} <= set(summary)
    # The ladder is placed (journaled as orders) but none of it is an action row.
    levbot = results[PolicyName.LEVBOT]
    assert levbot.summary()["backstop_orders"] > 0
    assert {row.kind for row in levbot.actions} <= {
        "stream_trigger", "backstop_fill", "transfer_in", "transfer_out", "reduce_order",
    }  # fmt: skip
    assert results[PolicyName.NONE].summary()["backstop_orders"] == 0


@pytest.mark.parametrize("policy", [PolicyName.NONE, PolicyName.PERIODIC, PolicyName.AUTO_MARGIN])
def test_replay_when_baseline_policy_then_no_stream_and_no_stops(policy: str) -> None:
    result = replay(bars(FLAT, (100, 100, 97, 99.5)), (policy,), reserve=D(5000))[policy]
    assert rows(result, "stream_trigger") == [] and rows(result, "backstop_fill") == []
