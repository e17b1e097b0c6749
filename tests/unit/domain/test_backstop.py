"""`plan_backstops` and `reconcile_backstops` on hand-built snapshots, numbers worked by hand.

Binance BTC tiers: 0.4% below 50k notional (cum 0), 0.5% from 50k (cum 50). Every leg of a
scope moves adversely by the same `d`: mark m -> m(1 - s*d), E(d) = E0 - N0*d.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from bot.domain.backstop import BackstopChanges, plan_backstops, reconcile_backstops
from bot.domain.leverage import liquidation_price, scope_metrics
from bot.domain.models import (
    AccountSnapshot,
    MarginMode,
    OrderSide,
    Position,
    Side,
    WalletBalance,
)
from bot.domain.stops import BACKSTOP_OFF, BackstopSettings, Stop, StopOrder, StopStatus
from bot.domain.targets import Target, Targets
from bot.exchange.sim.markets import BTC_TIERS, binance_usdm_markets

NOW = datetime(2021, 5, 19, 12, 0, tzinfo=UTC)
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
TEN = Targets(Target(D(10), D(8), D(12)))
SLIP = D("0.0005")
ONE_LEVEL = BackstopSettings(levels=1, liquidation_buffer=None, close_last=False)


def snapshot(
    *positions: Position, wallet: str = "5000", watched: frozenset[str] = frozenset()
) -> AccountSnapshot:
    return AccountSnapshot(
        account="acct",
        settle="USDT",
        taken_at=NOW,
        derivatives=WalletBalance(D(wallet), D(wallet)),
        source=None,
        positions=positions,
        markets=binance_usdm_markets(),
        watched=watched,
    )


def leg(
    symbol: str = BTC,
    side: Side = Side.LONG,
    contracts: str = "1",
    price: str = "50000",
    *,
    margin: str | None = None,
    hedged: bool = False,
) -> Position:
    return Position(
        symbol=symbol,
        side=side,
        contracts=D(contracts),
        entry_price=D(price),
        mark_price=D(price),
        margin_mode=MarginMode.CROSS if margin is None else MarginMode.ISOLATED,
        isolated_margin=D(0) if margin is None else D(margin),
        hedged=hedged,
    )


def close(a: D, b: str | D, places: int = 6) -> bool:
    return abs(a - D(b)) < D(1).scaleb(-places)


# -- plan_backstops ----------------------------------------------------------------------


def test_plan_backstops_when_long_cross_at_10x_then_trigger_where_mr_reaches_085() -> None:
    # 1 BTC long @ 50000, wallet 5000: E0 = 5000, N0 = 50000 (10x). Moving down, the
    # notional is in the 0.4% tier: MM = 200(1-d), E = 5000 - 50000d.
    # 200 - 200d = 0.85(5000 - 50000d) -> 42300d = 4050 -> d = 0.0957447
    # trigger = 50000(1 - d) = 45212.765957...; liquidation (MR = 1) is at 45180.72.
    # At the trigger N' = 45212.766, E' = 212.766; back to 10x with fee + slippage 0.001:
    # dN = (45212.766 - 2127.660) / (1 - 10*0.001) = 43520.31 -> 0.96256 BTC -> 0.962.
    plan = plan_backstops(snapshot(leg()), TEN, ONE_LEVEL, SLIP)
    (stop,) = plan.stops
    assert stop.scope == "acct"
    assert stop.level == 1
    assert stop.position_side is Side.LONG
    assert stop.order_side is OrderSide.SELL
    assert close(stop.trigger_price, "45212.765957")
    assert stop.amount == D("0.962")
    liquidation = liquidation_price(Side.LONG, D(1), D(50000), D(1), D(5000), BTC_TIERS)
    assert liquidation is not None and close(liquidation, "45180.722892")
    assert liquidation < stop.trigger_price < D(50000)


def test_plan_backstops_when_short_cross_then_trigger_above_mark_in_the_next_tier() -> None:
    # 1 BTC short @ 50000, wallet 5000. Moving up, the notional enters the 0.5% tier at
    # once: MM = 0.005 * 50000(1+d) - 50 = 200 + 250d; E = 5000 - 50000d.
    # 200 + 250d = 4250 - 42500d -> d = 4050/42750 = 0.0947368 -> trigger 54736.842105.
    # N' = 54736.842, E' = 263.158: dN = (54736.842 - 2631.579)/0.99 = 52631.58 -> 0.961.
    plan = plan_backstops(snapshot(leg(side=Side.SHORT)), TEN, ONE_LEVEL, SLIP)
    (stop,) = plan.stops
    assert stop.order_side is OrderSide.BUY
    assert close(stop.trigger_price, "54736.842105")
    assert stop.amount == D("0.961")


def test_plan_backstops_when_isolated_in_the_first_tier_then_one_level_closing_the_leg() -> None:
    # 0.1 BTC long, isolated margin 500 (10x): the same shape as the cross case scaled
    # by 0.1, so the trigger is 45212.766 again, and the cut back to 10x is 0.0962576.
    # But the venue releases isolated margin pro rata: the 0.004 left would keep its
    # leverage, hence its liquidation price (0.4% tier, no cum), so no further level
    # could sit before it: the one level takes the whole leg.
    position = leg(contracts="0.1", margin="500")
    plan = plan_backstops(
        snapshot(position, wallet="10000"),
        TEN,
        BackstopSettings(liquidation_buffer=None, close_last=False),
        SLIP,
    )
    (stop,) = plan.stops
    assert stop.scope == "acct/BTC/USDT:USDT"
    assert close(stop.trigger_price, "45212.765957")
    assert stop.amount == D("0.1")
    assert any("takes the whole leg" in note for note in plan.notes)


def test_plan_backstops_when_isolated_in_a_higher_tier_then_the_ladder_goes_on() -> None:
    # 2 BTC long @ 50000, isolated margin 10000 (10x on 100000, the 0.5% tier, cum 50):
    # MM = 450 - 500d, E = 10000 - 100000d. 0.85: 84500d = 8050 -> d = 0.0952663
    # -> 45236.686. N' = 90473.37, E' = 473.37: (N' - 10E')/0.99 = 86605.7 -> 1.914 BTC.
    # The 0.086 left is in the 0.4% tier: MM 15.56 on 473.37 * 0.086/2 = 20.36 of
    # margin (MR 0.76 < 0.85), so level 2 sits further down and, being in the first
    # tier, takes the rest.
    position = leg(contracts="2", margin="10000")
    plan = plan_backstops(
        snapshot(position, wallet="0"),
        TEN,
        BackstopSettings(liquidation_buffer=None, close_last=False),
        SLIP,
    )
    first, second = plan.stops
    assert close(first.trigger_price, D(50000) * (1 - D(8050) / 84500))
    assert first.amount == D("1.914")
    assert second.amount == D("0.086")
    assert second.trigger_price < first.trigger_price


def test_plan_backstops_when_two_cross_legs_then_both_trigger_at_the_same_move() -> None:
    # BTC long 1 @ 50000 (MM 200(1-d)) + ETH short 10 @ 2500 (0.5% tier, MM 125(1+d)),
    # wallet 7500: E0 = 7500, N0 = 75000.  325 - 75d = 0.85(7500 - 75000d)
    # -> 63675d = 6050 -> d = 0.0950137 -> BTC 45249.313, ETH 2500 * 69725/63675 = 2737.534.
    # N' = 75000 - 25000d = 72624.656, E' = 374.0 -> dN = (N' - 10E')/0.99 = 69578.31,
    # split by notional at the trigger: BTC 45249.31/72624.66, ETH the rest.
    account = snapshot(leg(), leg(ETH, Side.SHORT, "10", "2500"), wallet="7500")
    plan = plan_backstops(account, TEN, ONE_LEVEL, SLIP)
    btc, eth = plan.stops
    assert (btc.symbol, eth.symbol) == (BTC, ETH)
    assert close(btc.trigger_price, "45249.312917")
    assert close(eth.trigger_price, D(2500) * 69725 / 63675)
    # 69578.31 * 45249.31/72624.66 / 45249.31 = 0.95805 BTC; ETH 0.95805 * 10 = 9.5805.
    assert btc.amount == D("0.958")
    assert eth.amount == D("9.580")
    # Independent check: the account's margin ratio at those marks is the danger point.
    moved = (
        leg(BTC, Side.LONG, "1", "50000"),
        leg(ETH, Side.SHORT, "10", "2500"),
    )
    at = [
        Position(p.symbol, p.side, p.contracts, p.entry_price, s.trigger_price)
        for p, s in zip(moved, (btc, eth), strict=True)
    ]
    equity = D(7500) + sum(
        (p.side.sign * p.contracts * (s.trigger_price - p.entry_price))
        for p, s in zip(at, (btc, eth), strict=True)
    )
    metrics = scope_metrics(equity, at, binance_usdm_markets())
    assert metrics.margin_ratio is not None and close(metrics.margin_ratio, "0.85", 9)


def test_plan_backstops_when_hedge_mode_then_each_leg_its_own_stop() -> None:
    # Long 1 and short 1 BTC @ 50000, hedged, wallet 10000 (10x on 100000 gross). Both
    # legs taken adversely: MM = 200(1-d) + 200 + 250d = 400 + 50d, E = 10000 - 100000d.
    # 400 + 50d = 8500 - 85000d -> d = 8100/85050 = 0.0952381: 45238.095 / 54761.905.
    account = snapshot(leg(hedged=True), leg(side=Side.SHORT, hedged=True), wallet="10000")
    plan = plan_backstops(account, TEN, ONE_LEVEL, SLIP)
    long_stop, short_stop = plan.stops
    assert (long_stop.position_side, short_stop.position_side) == (Side.LONG, Side.SHORT)
    assert long_stop.hedged and short_stop.hedged
    assert (long_stop.order_side, short_stop.order_side) == (OrderSide.SELL, OrderSide.BUY)
    assert close(long_stop.trigger_price, "45238.095238")
    assert close(short_stop.trigger_price, "54761.904762")


def test_plan_backstops_when_fraction_then_that_share_of_what_is_left_per_level() -> None:
    # Half of 1 BTC, then half of the 0.5 left, then of the 0.25: 0.5, 0.25, 0.125.
    settings = BackstopSettings(fraction=D("0.5"), liquidation_buffer=None, close_last=False)
    plan = plan_backstops(snapshot(leg()), TEN, settings, SLIP)
    assert [s.amount for s in plan.stops] == [D("0.5"), D("0.25"), D("0.125")]
    assert [s.level for s in plan.stops] == [1, 2, 3]
    triggers = [s.trigger_price for s in plan.stops]
    assert triggers == sorted(triggers, reverse=True)  # each deeper level further down
    assert close(triggers[0], "45212.765957")


def test_plan_backstops_when_liquidation_buffer_then_trigger_that_far_from_liquidation() -> None:
    # Liquidation at d_L = 4800/49800 = 0.0963855 (45180.723). A buffer of 1% of the
    # price: (d_L - d)/(1 - d) = 0.01 -> d = (d_L - 0.01)/0.99 = 0.0872581 -> 45637.094.
    settings = BackstopSettings(levels=1, liquidation_buffer=D("0.01"), close_last=False)
    (stop,) = plan_backstops(snapshot(leg()), TEN, settings, SLIP).stops
    assert close(stop.trigger_price, "45637.093830")
    liquidation = D("45180.722891566265")
    assert close((stop.trigger_price - liquidation) / stop.trigger_price, "0.01", 9)


def test_plan_backstops_when_cut_under_the_minimum_then_rounded_up_to_it() -> None:
    # 0.003 BTC (150 USDT) at 10x: the cut is 0.00289 -> 0.002, under the 100 USDT
    # minimum cost at the fill (100 / (45212.77 * 0.9995) -> 0.003): the whole 0.003.
    plan = plan_backstops(
        snapshot(leg(contracts="0.003"), wallet="15"),
        TEN,
        BackstopSettings(liquidation_buffer=None, close_last=False),
        SLIP,
    )
    (stop,) = plan.stops
    assert stop.amount == D("0.003")


def test_plan_backstops_when_minimum_exceeds_the_leg_then_the_whole_leg() -> None:
    # 0.002 BTC (100 USDT): the cut 0.0019 -> 0.001; the minimum 0.003 is more than the
    # leg holds, so the stop closes the whole 0.002 (never more).
    plan = plan_backstops(
        snapshot(leg(contracts="0.002"), wallet="10"),
        TEN,
        BackstopSettings(liquidation_buffer=None, close_last=False),
        SLIP,
    )
    (stop,) = plan.stops
    assert stop.amount == D("0.002")


def test_plan_backstops_when_already_past_the_danger_point_then_no_stop_and_a_note() -> None:
    # Wallet 220: MR = 200/220 = 0.91 >= 0.85 at the current mark.
    plan = plan_backstops(
        snapshot(leg(), wallet="220"),
        TEN,
        BackstopSettings(liquidation_buffer=None, close_last=False),
        SLIP,
    )
    assert plan.stops == ()
    assert any("already past the danger point" in note for note in plan.notes)


def test_plan_backstops_when_long_carries_more_equity_than_notional_then_no_stop() -> None:
    # 0.5x: the long can fall to zero without reaching the danger point.
    plan = plan_backstops(
        snapshot(leg(), wallet="100000"),
        TEN,
        BackstopSettings(liquidation_buffer=None, close_last=False),
        SLIP,
    )
    assert plan.stops == ()
    assert any("no danger point at a positive price" in note for note in plan.notes)


def test_plan_backstops_when_disabled_then_empty() -> None:
    assert plan_backstops(snapshot(leg()), TEN, BACKSTOP_OFF, SLIP).stops == ()


def test_plan_backstops_when_isolated_leg_unwatched_then_not_protected() -> None:
    account = snapshot(leg(contracts="0.1", margin="500"), watched=frozenset({ETH}))
    assert (
        plan_backstops(
            account, TEN, BackstopSettings(liquidation_buffer=None, close_last=False), SLIP
        ).stops
        == ()
    )


def test_plan_backstops_when_cross_leg_unpriced_then_scope_skipped_with_note() -> None:
    unpriced = Position(BTC, Side.LONG, D(1), D(50000), None)
    plan = plan_backstops(
        snapshot(unpriced), TEN, BackstopSettings(liquidation_buffer=None, close_last=False), SLIP
    )
    assert plan.stops == ()
    assert any("no usable mark price" in note for note in plan.notes)


def test_plan_backstops_when_one_cross_leg_unwatched_then_it_moves_but_gets_no_stop() -> None:
    account = snapshot(
        leg(), leg(ETH, Side.SHORT, "10", "2500"), wallet="7500", watched=frozenset({BTC})
    )
    stops = plan_backstops(account, TEN, ONE_LEVEL, SLIP).stops
    assert [s.symbol for s in stops] == [BTC]
    # The same move as with both legs (the ETH short still counts): 45249.313.
    assert close(stops[0].trigger_price, "45249.312917")


def test_plan_backstops_when_ladder_then_sorted_and_never_above_the_leg() -> None:
    plan = plan_backstops(
        snapshot(leg()), TEN, BackstopSettings(liquidation_buffer=None, close_last=False), SLIP
    )
    assert [s.level for s in plan.stops] == [1, 2, 3]
    assert sum(s.amount for s in plan.stops) <= D(1)


# -- reconcile_backstops -----------------------------------------------------------------


def stop(
    level: int = 1, trigger: str = "45000", amount: str = "0.5", side: Side = Side.LONG
) -> Stop:
    return Stop(
        scope="acct",
        level=level,
        symbol=BTC,
        position_side=side,
        amount=D(amount),
        trigger_price=D(trigger),
    )


def resting(
    trigger: str = "45000",
    amount: str = "0.5",
    side: OrderSide = OrderSide.SELL,
    ident: str = "1",
    status: StopStatus = StopStatus.OPEN,
) -> StopOrder:
    return StopOrder(
        client_order_id=f"c{ident}",
        exchange_id=ident,
        symbol=BTC,
        side=side,
        amount=D(amount),
        trigger_price=D(trigger),
        status=status,
    )


SETTINGS = BackstopSettings(liquidation_buffer=None, close_last=False)  # reprice tolerance 0.5%


def test_reconcile_when_resting_matches_then_kept() -> None:
    held = resting()
    assert reconcile_backstops([stop()], [held], SETTINGS) == BackstopChanges(keep=(held,))


def test_reconcile_when_trigger_moved_within_tolerance_then_kept() -> None:
    # |45200 - 45000| / 45000 = 0.44% <= 0.5%.
    held = resting("45200")
    assert reconcile_backstops([stop()], [held], SETTINGS).keep == (held,)


def test_reconcile_when_trigger_moved_past_tolerance_then_cancel_and_place() -> None:
    # |45300 - 45000| / 45000 = 0.67% > 0.5%.
    held, wanted = resting("45300"), stop()
    changes = reconcile_backstops([wanted], [held], SETTINGS)
    assert changes == BackstopChanges(place=(wanted,), cancel=(held,))


def test_reconcile_when_resting_amount_exceeds_the_leg_now_then_replaced() -> None:
    # The position shrank to 0.3: the wanted stop is 0.3; the resting 0.5 must go.
    held, wanted = resting(amount="0.5"), stop(amount="0.3")
    changes = reconcile_backstops([wanted], [held], SETTINGS)
    assert changes == BackstopChanges(place=(wanted,), cancel=(held,))


def test_reconcile_when_resting_one_step_smaller_then_kept_one_step_larger_then_replaced() -> None:
    # Re-planned at a new mark, a level can round one step either way (6.803 <-> 6.804
    # seen on ETH 5m): a stop a step smaller is kept (no cancel-replace churn); a stop a
    # step larger than wanted never is.
    smaller, larger = resting(amount="6.803"), resting(amount="6.804")
    wanted_larger, wanted_smaller = stop(amount="6.804"), stop(amount="6.803")

    assert reconcile_backstops([wanted_larger], [smaller], SETTINGS).keep == (smaller,)
    changes = reconcile_backstops([wanted_smaller], [larger], SETTINGS)
    assert changes == BackstopChanges(place=(wanted_smaller,), cancel=(larger,))


def test_reconcile_when_position_gone_then_resting_cancelled() -> None:
    held = resting()
    assert reconcile_backstops([], [held], SETTINGS) == BackstopChanges(cancel=(held,))


def test_reconcile_when_nothing_resting_then_ladder_placed() -> None:
    ladder = [stop(1, "45000"), stop(2, "42000")]
    assert reconcile_backstops(ladder, [], SETTINGS).place == tuple(ladder)


def test_reconcile_when_sell_ladder_then_paired_nearest_mark_first() -> None:
    # Resting sells arrive in any order; the highest trigger pairs with level 1.
    deep, near = resting("42000", ident="2"), resting("45000", ident="1")
    ladder = [stop(2, "42000"), stop(1, "45000")]
    changes = reconcile_backstops(ladder, [deep, near], SETTINGS)
    assert changes == BackstopChanges(keep=(near, deep))


def test_reconcile_when_buy_ladder_then_lowest_trigger_pairs_with_level_1() -> None:
    near = resting("55000", side=OrderSide.BUY, ident="1")
    deep = resting("58000", side=OrderSide.BUY, ident="2")
    ladder = [stop(1, "55000", side=Side.SHORT), stop(2, "58000", side=Side.SHORT)]
    changes = reconcile_backstops(ladder, [deep, near], SETTINGS)
    assert changes.keep == (near, deep)


def test_reconcile_when_ladder_shorter_then_extra_resting_cancelled() -> None:
    near, deep = resting("45000", ident="1"), resting("42000", ident="2")
    changes = reconcile_backstops([stop(1, "45000")], [near, deep], SETTINGS)
    assert changes == BackstopChanges(cancel=(deep,), keep=(near,))


def test_reconcile_when_other_side_resting_then_not_paired_across_sides() -> None:
    # A buy stop (for a short) never stands in for a wanted sell stop.
    buy = resting("45000", side=OrderSide.BUY)
    wanted = stop()
    changes = reconcile_backstops([wanted], [buy], SETTINGS)
    assert changes == BackstopChanges(place=(wanted,), cancel=(buy,))


@pytest.mark.parametrize("status", [StopStatus.TRIGGERED, StopStatus.CANCELED])
def test_reconcile_when_stop_no_longer_resting_then_ignored(status: StopStatus) -> None:
    wanted = stop()
    changes = reconcile_backstops([wanted], [resting(status=status)], SETTINGS)
    assert changes == BackstopChanges(place=(wanted,))


def test_plan_backstops_when_close_last_then_the_last_level_takes_what_is_left() -> None:
    # A dead daemon places no fourth level: the third closes the leg, so the crash that
    # goes on past it meets no position to liquidate.
    position = leg()
    closing = plan_backstops(snapshot(position, wallet="10000"), TEN, BackstopSettings(), SLIP)
    sized = plan_backstops(
        snapshot(position, wallet="10000"), TEN, BackstopSettings(close_last=False), SLIP
    )

    assert [s.level for s in closing.stops] == [1, 2, 3]
    assert sum(s.amount for s in closing.stops) == position.contracts
    assert closing.stops[:2] == sized.stops[:2]
    assert sum(s.amount for s in sized.stops) < position.contracts


def test_plan_backstops_when_a_level_is_whole_steps_then_every_mark_sizes_it_alike() -> None:
    # Seen in a replay (ETH perp 5m, 2022-06-10, target 10): the same wallet and leg give
    # level 2 exactly 6.804 ETH, which 28-digit arithmetic lands a few units of the last
    # digit either side of, by the mark's last digits; rounded down, some marks made it
    # 6.803 and the daemon re-placed the level back and forth. Within one state the
    # ladder does not depend on the mark.
    def ladder(mark: D) -> list[tuple[int, D]]:
        position = replace(leg(ETH, contracts="56.204", price="1779.22"), mark_price=mark)
        plan = plan_backstops(snapshot(position, wallet="10000"), TEN, BackstopSettings(), SLIP)
        return [(s.level, s.amount) for s in plan.stops]

    expected = ladder(D("1779.22"))
    assert [amount for _, amount in expected] == [D("48.284"), D("6.804"), D("1.116")]
    marks = [D("1700") + D("0.37") * i for i in range(500)]  # 1700 .. 1884.63
    assert [m for m in marks if ladder(m) != expected] == []
