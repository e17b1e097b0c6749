"""`plan_rebalance`, one table per rule of DESIGN.md §2–3, on hand-built snapshots."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from bot.domain.actions import (
    ActionKind,
    MarginAdjustment,
    Order,
    Plan,
    RecentActivity,
    Rule,
    Transfer,
)
from bot.domain.leverage import round_down
from bot.domain.models import (
    AccountSnapshot,
    MaintenanceTier,
    MarginMode,
    MarketRules,
    OrderSide,
    Position,
    Side,
    WalletBalance,
)
from bot.domain.planner import plan_rebalance
from bot.domain.targets import Policy, Prefer, Target, Targets

NOW = datetime(2021, 5, 19, 12, 0, tzinfo=UTC)
ACCOUNT = "acct"
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
BTC_TIERS = (
    MaintenanceTier(D(0), D("0.004")),
    MaintenanceTier(D(50000), D("0.005")),
    MaintenanceTier(D(250000), D("0.01")),
)
ETH_TIERS = (MaintenanceTier(D(0), D("0.005")), MaintenanceTier(D(100000), D("0.0065")))
BAND = Targets(Target(D(3), D("2.5"), D("3.5")))
# No slippage allowance unless a test is about it: the expected numbers stay readable.
NO_SLIP = Policy(slippage_allowance=D(0))


def market(
    symbol: str = BTC,
    *,
    step: str | None = "0.001",
    min_amount: str = "0.001",
    min_cost: str = "100",
    fee: str = "0.0005",
    tiers: tuple[MaintenanceTier, ...] = BTC_TIERS,
) -> MarketRules:
    return MarketRules(
        symbol=symbol,
        amount_step=None if step is None else D(step),
        min_amount=D(min_amount),
        min_cost=D(min_cost),
        taker_fee=D(fee),
        tiers=tiers,
    )


MARKETS = {BTC: market(), ETH: market(ETH, min_cost="20", tiers=ETH_TIERS)}


def pos(
    contracts: str,
    mark: str | None = "50000",
    *,
    symbol: str = BTC,
    side: Side = Side.LONG,
    entry: str | None = None,
    isolated_margin: str | None = None,
    hedged: bool = False,
    liquidation: str | None = None,
) -> Position:
    return Position(
        symbol=symbol,
        side=side,
        contracts=D(contracts),
        entry_price=D(entry or mark or "1"),
        mark_price=None if mark is None else D(mark),
        margin_mode=MarginMode.CROSS if isolated_margin is None else MarginMode.ISOLATED,
        isolated_margin=D(isolated_margin or 0),
        liquidation_price=None if liquidation is None else D(liquidation),
        hedged=hedged,
    )


def snap(
    wallet: str,
    positions: Sequence[Position],
    *,
    source: str | None = "0",
    free: str | None = None,
    markets: dict[str, MarketRules] | None = None,
    taken_at: datetime = NOW,
    min_transfer: str = "0",
    can_adjust_margin: bool = True,
) -> AccountSnapshot:
    return AccountSnapshot(
        account=ACCOUNT,
        settle="USDT",
        taken_at=taken_at,
        derivatives=WalletBalance(D(wallet), D(wallet if free is None else free)),
        source=None if source is None else WalletBalance(D(source), D(source)),
        positions=tuple(positions),
        markets=MARKETS if markets is None else markets,
        min_transfer=D(min_transfer),
        can_adjust_margin=can_adjust_margin,
    )


def plan(
    snapshot: AccountSnapshot,
    policy: Policy = NO_SLIP,
    targets: Targets = BAND,
    activity: RecentActivity | None = None,
) -> Plan:
    result = plan_rebalance(snapshot, targets, policy, NOW, activity)
    assert_reasons_complete(result)
    return result


def assert_reasons_complete(result: Plan) -> None:
    """Every action says which rule made it and the leverage before and expected after."""
    for action in result.actions:
        assert isinstance(action.reason.rule, Rule)
        assert action.reason.scope
        assert action.reason.describe().startswith(action.reason.rule.value)
        [decision] = [d for d in result.decisions if d.scope == action.reason.scope]
        # Leverage is undefined only while equity is not positive (an emergency).
        if decision.leverage is not None:
            assert action.reason.leverage_before is not None
        if action.reason.rule is not Rule.EMERGENCY:
            assert action.reason.leverage_after is not None


def orders(result: Plan) -> list[Order]:
    return [a for a in result.actions if isinstance(a, Order)]


def transfers(result: Plan) -> list[Transfer]:
    return [a for a in result.actions if isinstance(a, Transfer)]


def notes(result: Plan) -> str:
    return " | ".join([*result.notes, *(n for d in result.decisions for n in d.notes)])


def leverage_after(result: Plan) -> D:
    after = result.actions[-1].reason.leverage_after
    assert after is not None
    return after


# -- the band ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wallet", "contracts"),
    [("10000", "0.5"), ("10000", "0.6"), ("10000", "0.7"), ("20000", "1.2")],
    ids=["at-min", "at-target", "at-max", "inside"],
)
def test_plan_when_leverage_inside_band_then_no_action_and_no_rule(
    wallet: str, contracts: str
) -> None:
    result = plan(snap(wallet, [pos(contracts)], source="100000"))
    assert result.empty
    assert [d.rule for d in result.decisions] == [None]
    assert result.decisions[0].band == (D("2.5"), D("3.5"))
    assert result.decisions[0].target == D(3)


def test_plan_when_no_positions_then_no_scope_and_no_action() -> None:
    result = plan(snap("1000", []))
    assert result.empty
    assert result.decisions == ()
    assert result.created_at == NOW


# -- de-lever with collateral ------------------------------------------------------------


def test_plan_when_cross_above_band_and_source_funded_then_transfer_in_to_target() -> None:
    # W 10000, 1 BTC at 50000: L = 5 > 3.5. A = N / T - E = 6666.67 (rounded up to cents).
    result = plan(snap("10000", [pos("1")], source="20000"))
    assert len(result.actions) == 1
    transfer = result.actions[0]
    assert isinstance(transfer, Transfer)
    assert transfer.kind is ActionKind.TRANSFER_IN
    assert transfer.into_derivatives
    assert transfer.currency == "USDT"
    assert transfer.amount == D("6666.67")
    assert transfer.reason.rule is Rule.DELEVER
    assert transfer.reason.scope == ACCOUNT
    assert transfer.reason.leverage_before == D(5)
    # Back to the target, not to the band's edge (3.5): no new action a minute later.
    assert abs(leverage_after(result) - D(3)) < D("0.0001")
    assert leverage_after(result) <= D(3)
    decision = result.decisions[0]
    assert decision.rule is Rule.DELEVER
    assert decision.leverage == D(5)
    assert decision.expected_leverage == leverage_after(result)


def test_plan_when_isolated_above_band_and_wallet_free_then_add_margin_only() -> None:
    # E_p = 10000 margin, 1 BTC at 50000: L_p = 5. Derivatives wallet frees 20000.
    result = plan(snap("20000", [pos("1", isolated_margin="10000")]))
    assert len(result.actions) == 1
    adjustment = result.actions[0]
    assert isinstance(adjustment, MarginAdjustment)
    assert adjustment.kind is ActionKind.ADD_MARGIN
    assert (adjustment.symbol, adjustment.side, adjustment.add) == (BTC, Side.LONG, True)
    assert adjustment.amount == D("6666.67")
    assert adjustment.reason.scope == f"{ACCOUNT}/{BTC}"
    assert abs(leverage_after(result) - D(3)) < D("0.0001")


def test_plan_when_isolated_and_wallet_lacks_free_balance_then_transfer_in_first() -> None:
    result = plan(snap("1000", [pos("1", isolated_margin="10000")], source="20000"))
    assert [a.kind for a in result.actions] == [ActionKind.TRANSFER_IN, ActionKind.ADD_MARGIN]
    transfer, adjustment = result.actions
    assert transfer.amount == D("5666.67")  # the shortfall: 6666.67 - 1000 free
    assert adjustment.amount == D("6666.67")
    assert transfer.reason.rule is adjustment.reason.rule is Rule.DELEVER
    assert abs(leverage_after(result) - D(3)) < D("0.0001")


def test_plan_when_isolated_and_shortfall_below_min_transfer_then_transfer_the_minimum() -> None:
    result = plan(
        snap("6600", [pos("1", isolated_margin="10000")], source="20000", min_transfer="100")
    )
    transfer, adjustment = result.actions
    assert isinstance(transfer, Transfer)
    assert transfer.amount == D(100)  # shortfall 66.67 rounded up to the exchange minimum
    assert adjustment.amount == D("6666.67")


# -- de-lever with reduce-only orders ----------------------------------------------------


@pytest.mark.parametrize(
    ("fee", "slippage", "amount"),
    [
        # dN = (N - T * E) / (1 - T * (f + s)) with N = 50000, E = 10000, T = 3.
        ("0", "0", "0.40000"),  # 20000 / 1
        ("0.0005", "0", "0.40060"),  # 20000 / 0.9985 = 20030.05
        ("0.0005", "0.0005", "0.40120"),  # 20000 / 0.997 = 20060.18
        ("0.001", "0.001", "0.40241"),  # 20000 / 0.994 = 20120.72
    ],
)
def test_plan_when_reducing_then_size_covers_fee_and_slippage(
    fee: str, slippage: str, amount: str
) -> None:
    markets = {BTC: market(step="0.00001", fee=fee)}
    result = plan(
        snap("10000", [pos("1")], markets=markets), Policy(slippage_allowance=D(slippage))
    )
    [order] = result.actions
    assert isinstance(order, Order)
    assert order.amount == D(amount)
    assert order.reduce_only
    assert order.order_side is OrderSide.SELL
    assert order.notional == D(amount) * 50000
    assert order.expected_price == D(50000)
    assert order.reason.rule is Rule.DELEVER
    # What is left after the fee and slippage is still at (not below, not above) the target.
    assert abs(leverage_after(result) - D(3)) < D("0.001")


def test_plan_when_short_above_band_then_reduce_order_buys() -> None:
    result = plan(snap("10000", [pos("1", side=Side.SHORT)]))
    [order] = orders(result)
    assert order.position_side is Side.SHORT
    assert order.order_side is OrderSide.BUY
    assert order.reduce_only


@pytest.mark.parametrize(
    ("step", "amount"),
    [("0.00001", "0.40060"), ("0.001", "0.400"), ("0.01", "0.40"), ("0.1", "0.4")],
)
def test_plan_when_amount_between_steps_then_rounded_down_never_past_the_gap(
    step: str, amount: str
) -> None:
    markets = {BTC: market(step=step, min_amount=step)}
    result = plan(snap("10000", [pos("1")], markets=markets))
    [order] = orders(result)
    assert order.amount == D(amount)
    assert round_down(order.amount, D(step)) == order.amount
    assert leverage_after(result) >= D(3)  # rounding down never overshoots the target


def test_plan_when_two_markets_then_reduction_split_by_notional() -> None:
    # BTC 30000 + ETH 20000 against E = 10000: L = 5; dN = 20030.05 split 60/40.
    positions = [pos("0.6"), pos("10", "2000", symbol=ETH)]
    result = plan(snap("10000", positions))
    btc, eth = orders(result)
    assert (btc.symbol, eth.symbol) == (BTC, ETH)
    assert btc.amount == D("0.240")  # 12018.03 / 50000 = 0.24036
    assert eth.amount == D("4.006")  # 8012.02 / 2000 = 4.00601
    assert btc.notional / eth.notional == pytest.approx(D("1.5"), rel=D("0.01"))
    assert btc.reason.leverage_before == eth.reason.leverage_before == D(5)
    assert abs(leverage_after(result) - D(3)) < D("0.01")


def test_plan_when_prefer_orders_then_orders_before_collateral() -> None:
    policy = Policy(prefer=Prefer.ORDERS, slippage_allowance=D(0))
    result = plan(snap("10000", [pos("1")], source="20000"), policy)
    assert result.actions[0].kind is ActionKind.REDUCE_ORDER
    assert result.actions[0].amount == D("0.400")
    # Collateral only tops up what the rounded-down order left: a cent-sized residue.
    assert sum((t.amount for t in transfers(result)), D(0)) < D(20)
    assert abs(leverage_after(result) - D(3)) < D("0.01")


def test_plan_when_prefer_collateral_and_source_short_then_orders_cover_the_rest() -> None:
    result = plan(snap("10000", [pos("1")], source="2000"))
    assert [a.kind for a in result.actions] == [ActionKind.TRANSFER_IN, ActionKind.REDUCE_ORDER]
    transfer, order = result.actions
    assert transfer.amount == D(2000)
    # dN = (50000 - 3 * 12000) / 0.9985 = 14021.03
    assert order.amount == D("0.280")
    assert order.reason.leverage_before == D(50000) / D(12000)
    assert abs(leverage_after(result) - D(3)) < D("0.01")


def test_plan_when_isolated_reduce_then_released_margin_is_repledged() -> None:
    result = plan(snap("0", [pos("1", isolated_margin="10000")]))
    assert [a.kind for a in result.actions] == [ActionKind.REDUCE_ORDER, ActionKind.ADD_MARGIN]
    order, repledge = result.actions
    assert order.amount == D("0.400")
    # The order releases 40% of E_p = 4000 to the wallet; put it back minus the fee (10).
    assert repledge.amount == D("3990.00")
    assert abs(leverage_after(result) - D(3)) < D("0.01")


def test_plan_when_isolated_short_reduced_then_repledge_fits_what_is_released() -> None:
    # Buying back 0.401 BTC at 50000 * 1.0005 releases 40.1% of E_p (4010) minus the
    # slippage (10.025) and the fee charged on the slipped fill (10.0300125): 3989.9449875.
    position = pos("1", side=Side.SHORT, isolated_margin="10000")
    result = plan(snap("0", [position]), Policy())
    order, repledge = result.actions
    assert order.amount == D("0.401")
    assert repledge.amount == D("3989.94")
    assert repledge.amount <= D("3989.9449875")


# -- limits: minimums, precision, position size ------------------------------------------


@pytest.mark.parametrize(
    ("markets", "minimum", "leverage"),
    [
        ({BTC: market(min_cost="100")}, "0.002", "2.858"),  # 0.001 BTC = 50 USDT < 100
        ({BTC: market(min_cost="0", min_amount="0.01")}, "0.01", "0"),  # the whole position
    ],
    ids=["min-cost", "min-amount"],
)
def test_plan_when_only_order_below_market_minimum_then_rounded_up_to_leave_the_band_top(
    markets: dict[str, MarketRules], minimum: str, leverage: str
) -> None:
    # 0.01 BTC (500) against E = 140: L = 3.57; dN = 80.1 -> 0.001 BTC. Skipping it would
    # leave the scope above its band, so the planner sells the minimum (or closes).
    result = plan(snap("140", [pos("0.01")], markets=markets))
    [order] = orders(result)
    assert order.amount == D(minimum)
    assert order.reduce_only
    assert order.reason.rule is Rule.DELEVER
    assert f"0.001 contracts is below the market minimum {minimum}; rounded up" in notes(result)
    assert result.decisions[0].expected_leverage is not None
    assert round(result.decisions[0].expected_leverage, 3) == D(leverage)


def test_plan_when_position_smaller_than_minimum_and_far_above_band_then_closed() -> None:
    # 0.002 BTC (100) against E = 8: L = 12.5, no collateral; min_cost 150 > the position.
    markets = {BTC: market(min_cost="150")}
    result = plan(snap("8", [pos("0.002")], markets=markets))
    [order] = orders(result)
    assert (order.amount, order.reduce_only) == (D("0.002"), True)
    assert order.reason.rule is Rule.DELEVER
    assert "rounded up to 0.002" in notes(result)


def test_plan_when_minimum_above_max_order_notional_then_not_rounded_up() -> None:
    # As above (L = 3.57, 0.001 BTC wanted, minimum 0.002 = 100 USDT), but the owner caps
    # every order at 60 USDT: the minimum order would break the cap, so nothing is sent.
    policy = Policy(slippage_allowance=D(0), max_order_notional=D(60))
    result = plan(snap("140", [pos("0.01")], markets={BTC: market(min_cost="100")}), policy)
    assert result.empty
    assert "0.001 contracts is below the market minimum 0.002; skipped" in notes(result)


def test_plan_when_small_leg_below_minimum_but_band_reached_then_leg_skipped() -> None:
    # BTC 50000 + ETH 200 against E = 13944: L = 3.6. BTC's share (0.166) brings the
    # account to ~3.0; ETH's share (0.016 ETH = 33 USDT) is under min_cost 100: skipped.
    markets = {BTC: market(), ETH: market(ETH, min_cost="100", tiers=ETH_TIERS)}
    positions = [pos("1"), pos("0.1", "2000", symbol=ETH)]
    result = plan(snap("13944", positions, markets=markets))
    [order] = orders(result)
    assert (order.symbol, order.amount) == (BTC, D("0.166"))
    assert "ETH/USDT:USDT: 0.016 contracts is below the market minimum 0.050; skipped" in (
        notes(result)
    )
    assert leverage_after(result) < D("3.5")


def test_plan_when_emergency_order_below_minimum_then_rounded_up_to_minimum() -> None:
    # Same account, but the owner's emergency margin ratio (0.01) is reached (MR = 0.0143).
    targets = Targets(Target(D(3), D("2.5"), D("3.5"), emergency_margin_ratio=D("0.01")))
    result = plan(snap("140", [pos("0.01")]), targets=targets)
    [order] = orders(result)
    assert order.amount == D("0.002")  # min_cost 100 / 50000
    assert order.reason.rule is Rule.EMERGENCY
    assert result.emergency


@pytest.mark.parametrize(("slippage", "minimum"), [("0", "0.005"), ("0.0005", "0.006")])
def test_plan_when_minimum_cost_then_sized_for_the_slipped_fill_not_the_mark(
    slippage: str, minimum: str
) -> None:
    # 100 USDT at 20000 is exactly 0.005 BTC at the mark, but a sell filled 0.05% lower
    # would be 99.95: the minimum that survives the fill is the next step up.
    targets = Targets(Target(D(3), D("2.5"), D("3.5"), emergency_margin_ratio=D("0.01")))
    result = plan(
        snap("30", [pos("0.01", "20000")]), Policy(slippage_allowance=D(slippage)), targets
    )
    [order] = orders(result)
    assert order.amount == D(minimum)


def test_plan_when_emergency_and_position_below_minimum_then_closed_outright() -> None:
    # 0.001 BTC = 50 USDT can never reach min_cost 100; an emergency closes it.
    targets = Targets(Target(D(3), D("2.5"), D("3.5"), emergency_margin_ratio=D("0.01")))
    result = plan(snap("10", [pos("0.001")]), targets=targets)
    [order] = orders(result)
    assert order.amount == D("0.001")
    assert order.reduce_only


def test_plan_when_equity_not_positive_then_emergency_closes_without_raising() -> None:
    # W 1000, long 1 BTC from 50000 marked at 48000: E = -1000, leverage undefined.
    result = plan(snap("1000", [pos("1", "48000", entry="50000")]))
    decision = result.decisions[0]
    assert decision.leverage is None
    assert decision.rule is Rule.EMERGENCY
    assert "equity is not positive" in notes(result)
    [order] = orders(result)
    assert order.amount == D(1)  # all of it, and never more than the position
    assert order.reason.leverage_before is None


def test_plan_when_equity_not_positive_and_source_funded_then_collateral_restores_target() -> None:
    result = plan(snap("1000", [pos("1", "48000", entry="50000")], source="100000"))
    [transfer] = result.actions
    assert isinstance(transfer, Transfer)
    assert transfer.amount == D(17000)  # 48000 / 3 - (-1000)
    assert transfer.reason.rule is Rule.EMERGENCY
    assert transfer.reason.leverage_before is None
    assert transfer.reason.leverage_after == D(3)


@pytest.mark.parametrize("contracts", ["0.001", "0.002", "0.005", "0.2", "1"])
def test_plan_when_emergency_then_no_order_exceeds_its_position(contracts: str) -> None:
    # A far-out-of-band book (wallet 1) in an emergency: every leg is cut, none past zero.
    targets = Targets(Target(D(3), D("2.5"), D("3.5"), emergency_margin_ratio=D("0.01")))
    positions = [pos(contracts), pos("0.003", "2000", symbol=ETH, side=Side.SHORT)]
    result = plan(snap("1", positions, source=None), targets=targets)
    assert result.emergency
    sizes = {p.symbol: p.contracts for p in positions}
    for order in orders(result):
        assert D(0) < order.amount <= sizes[order.symbol]


@pytest.mark.parametrize(
    ("liquidation", "emergency"),
    [("45100", False), ("47600", True)],
)
def test_plan_when_liquidation_closer_than_threshold_then_emergency(
    liquidation: str, emergency: bool
) -> None:
    targets = Targets(Target(D(3), D("2.5"), D("3.5"), emergency_liquidation_distance=D("0.05")))
    result = plan(snap("10000", [pos("1", liquidation=liquidation)]), targets=targets)
    assert result.decisions[0].rule is (Rule.EMERGENCY if emergency else Rule.DELEVER)
    assert result.emergency is emergency


# -- chunking and cooldown ---------------------------------------------------------------


def test_plan_when_order_above_max_order_notional_then_chunked_with_note() -> None:
    policy = Policy(max_order_notional=D(5000), slippage_allowance=D(0))
    result = plan(snap("10000", [pos("1")]), policy)
    [order] = orders(result)
    assert order.amount == D("0.1")
    assert order.notional <= D(5000)
    assert "chunked to 0.100 of 0.400 contracts" in notes(result)


@pytest.mark.parametrize(
    ("last_order_ago", "ordered"),
    [
        (timedelta(minutes=1), False),
        (timedelta(minutes=4, seconds=59), False),
        (timedelta(minutes=5), True),
        (timedelta(hours=1), True),
    ],
)
def test_plan_when_last_order_inside_cooldown_then_orders_wait(
    last_order_ago: timedelta, ordered: bool
) -> None:
    activity = RecentActivity(last_order_at={ACCOUNT: NOW - last_order_ago})
    result = plan(snap("10000", [pos("1")]), Policy(slippage_allowance=D(0)), activity=activity)
    assert bool(orders(result)) is ordered
    if not ordered:
        assert "orders wait for cooldown until" in notes(result)


def test_plan_when_cooldown_belongs_to_another_scope_then_orders_go_ahead() -> None:
    activity = RecentActivity(last_order_at={"other": NOW})
    assert orders(plan(snap("10000", [pos("1")]), activity=activity))


def test_plan_when_emergency_then_cooldown_and_chunking_are_bypassed() -> None:
    targets = Targets(Target(D(3), D("2.5"), D("3.5"), emergency_margin_ratio=D("0.01")))
    policy = Policy(max_order_notional=D(5000), slippage_allowance=D(0))
    activity = RecentActivity(last_order_at={ACCOUNT: NOW})
    result = plan(snap("10000", [pos("1")]), policy, targets, activity)
    [order] = orders(result)
    assert order.amount == D("0.400")
    assert order.notional > policy.max_order_notional  # type: ignore[operator]
    assert order.reason.rule is Rule.EMERGENCY
    assert "cooldown" not in notes(result)


# -- below the band ----------------------------------------------------------------------


def test_plan_when_below_band_and_defaults_then_no_action_with_note() -> None:
    result = plan(snap("10000", [pos("0.4")], source="0"), Policy())
    assert result.empty
    assert result.decisions[0].rule is Rule.RELEVER
    assert "release_excess and allow_increase are off" in notes(result)


def test_plan_when_below_band_and_release_excess_then_surplus_moves_out_to_target() -> None:
    # 20000 notional on E = 10000: L = 2 < 2.5. Surplus E - N / T = 3333.33.
    result = plan(snap("10000", [pos("0.4")]), Policy(release_excess=True))
    [transfer] = result.actions
    assert isinstance(transfer, Transfer)
    assert transfer.kind is ActionKind.TRANSFER_OUT
    assert transfer.amount == D("3333.33")
    assert transfer.reason.rule is Rule.RELEVER
    assert abs(leverage_after(result) - D(3)) < D("0.001")


def test_plan_when_below_band_and_release_excess_then_capped_by_free_balance() -> None:
    result = plan(snap("10000", [pos("0.4")], free="1000"), Policy(release_excess=True))
    [transfer] = result.actions
    assert transfer.amount == D(1000)


def test_plan_when_isolated_below_band_and_release_excess_then_reduce_margin() -> None:
    result = plan(snap("0", [pos("0.4", isolated_margin="10000")]), Policy(release_excess=True))
    [adjustment] = result.actions
    assert isinstance(adjustment, MarginAdjustment)
    assert adjustment.kind is ActionKind.REDUCE_MARGIN
    assert adjustment.amount == D("3333.33")


def test_plan_when_below_band_and_allow_increase_then_opening_order_to_target() -> None:
    result = plan(snap("10000", [pos("0.4")]), Policy(allow_increase=True, slippage_allowance=D(0)))
    [order] = result.actions
    assert isinstance(order, Order)
    assert order.kind is ActionKind.INCREASE_ORDER
    assert not order.reduce_only
    assert order.order_side is OrderSide.BUY
    # dN = (3 * 10000 - 20000) / (1 + 3 * 0.0005) = 9985.02 -> 0.199 BTC.
    assert order.amount == D("0.199")
    assert order.reason.rule is Rule.RELEVER
    assert leverage_after(result) <= D(3)


# -- caps on transfers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cap", "transferred_today", "amount"),
    [("5000", "0", "5000"), ("5000", "2000", "3000"), ("100000", "0", "6666.67")],
)
def test_plan_when_daily_transfer_cap_then_transfer_limited_to_what_is_left(
    cap: str, transferred_today: str, amount: str
) -> None:
    policy = Policy(daily_transfer_cap=D(cap), slippage_allowance=D(0))
    activity = RecentActivity(transferred_today=D(transferred_today))
    result = plan(snap("10000", [pos("1")], source="20000"), policy, activity=activity)
    moved = sum((t.amount for t in transfers(result)), D(0))
    assert moved == D(amount)
    assert moved + D(transferred_today) <= D(cap)


def test_plan_when_daily_cap_used_up_then_no_transfer_and_orders_instead() -> None:
    policy = Policy(daily_transfer_cap=D(5000), slippage_allowance=D(0))
    activity = RecentActivity(transferred_today=D(5000))
    result = plan(snap("10000", [pos("1")], source="20000"), policy, activity=activity)
    assert transfers(result) == []
    assert orders(result)
    assert "collateral: source wallet has 0.00 available" in notes(result)


@pytest.mark.parametrize(
    ("source", "floor", "amount"),
    [
        ("8000", "5000", "3000"),
        ("8000", "8000", "0"),
        ("8000", "9000", "0"),
        ("30000", "5000", "6666.67"),
    ],
)
def test_plan_when_source_floor_then_source_never_drops_below_it(
    source: str, floor: str, amount: str
) -> None:
    policy = Policy(source_floor=D(floor), slippage_allowance=D(0))
    result = plan(snap("10000", [pos("1")], source=source), policy)
    moved = sum((t.amount for t in transfers(result)), D(0))
    assert moved == D(amount)
    assert D(source) - moved >= min(D(floor), D(source))


def test_plan_when_source_floor_and_isolated_then_funding_transfer_respects_it() -> None:
    policy = Policy(source_floor=D(18000), slippage_allowance=D(0))
    result = plan(snap("1000", [pos("1", isolated_margin="10000")], source="20000"), policy)
    moved = sum((t.amount for t in transfers(result)), D(0))
    assert moved <= D(2000)
    margin = [a for a in result.actions if isinstance(a, MarginAdjustment)]
    assert margin[0].amount == D(3000)  # 1000 free + 2000 from the source


def test_plan_when_below_min_transfer_then_no_transfer_with_note() -> None:
    result = plan(snap("10000", [pos("1")], source="50", min_transfer="100"))
    assert transfers(result) == []
    assert "collateral: source wallet has 50.00 available" in notes(result)


def test_plan_when_no_source_wallet_then_orders_only() -> None:
    result = plan(snap("10000", [pos("1")], source=None))
    assert [a.kind for a in result.actions] == [ActionKind.REDUCE_ORDER]


# -- hedge mode --------------------------------------------------------------------------


def test_plan_when_hedge_mode_legs_then_both_reduced_each_closing_its_own_leg() -> None:
    # Long 0.5 + short 0.3 BTC = 40000 gross on E = 8000: L = 5.
    legs = [pos("0.5", hedged=True), pos("0.3", side=Side.SHORT, hedged=True)]
    result = plan(snap("8000", legs))
    long_order, short_order = sorted(orders(result), key=lambda o: o.position_side.value)
    assert (long_order.position_side, long_order.order_side) == (Side.LONG, OrderSide.SELL)
    assert (short_order.position_side, short_order.order_side) == (Side.SHORT, OrderSide.BUY)
    assert long_order.reduce_only and short_order.reduce_only
    assert long_order.hedged and short_order.hedged
    # dN = (40000 - 24000) / 0.9985 = 16024.04, split 5:3.
    assert long_order.amount == D("0.200")
    assert short_order.amount == D("0.120")
    assert long_order.amount <= D("0.5") and short_order.amount <= D("0.3")
    assert abs(leverage_after(result) - D(3)) < D("0.01")


def test_plan_when_hedge_mode_isolated_legs_then_each_leg_its_own_scope() -> None:
    legs = [
        pos("1", isolated_margin="10000", hedged=True),
        pos("1", side=Side.SHORT, isolated_margin="10000", hedged=True),
    ]
    result = plan(snap("100000", legs))
    scopes = sorted(a.reason.scope for a in result.actions)
    assert scopes == [f"{ACCOUNT}/{BTC}:long", f"{ACCOUNT}/{BTC}:short"]
    sides = sorted(a.side.value for a in result.actions if isinstance(a, MarginAdjustment))
    assert sides == ["long", "short"]
    assert all(a.hedged for a in result.actions if isinstance(a, MarginAdjustment))


# -- untrusted input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("snapshot", "reason"),
    [
        (
            snap("1000", [pos("1")], taken_at=NOW - timedelta(minutes=3)),
            "snapshot is stale (180s old",
        ),
        (snap("1000", [pos("1", None, entry="50000")]), f"missing mark price for {BTC}"),
        (snap("1000", [pos("1", "0")]), f"missing mark price for {BTC}"),
        (snap("1000", [pos("1")], markets={}), f"unknown market rules for {BTC}"),
        (
            snap("1000", [pos("1")], markets={BTC: market(step=None)}),
            f"unknown amount precision for {BTC}",
        ),
        (snap("1000", [pos("0")]), f"position {BTC} has no contracts"),
    ],
    ids=["stale", "no-mark", "zero-mark", "no-rules", "no-precision", "no-contracts"],
)
def test_plan_when_input_untrusted_then_empty_plan_with_reason(
    snapshot: AccountSnapshot, reason: str
) -> None:
    # Every one of these accounts is far above the band (L = 50): the planner still waits.
    result = plan(snapshot, Policy(), BAND)
    assert result.empty
    assert result.decisions == ()
    assert len(result.notes) == 1
    assert result.notes[0].startswith("no action: ")
    assert reason in result.notes[0]


def test_plan_when_snapshot_exactly_max_age_then_trusted() -> None:
    result = plan(snap("10000", [pos("1")], taken_at=NOW - Policy().max_snapshot_age))
    assert not result.empty


# -- reasons -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("snapshot", "policy"),
    [
        (snap("10000", [pos("1")], source="2000"), NO_SLIP),
        (snap("1000", [pos("1", isolated_margin="10000")], source="20000"), NO_SLIP),
        (snap("0", [pos("1", isolated_margin="10000")]), NO_SLIP),
        (snap("10000", [pos("0.6"), pos("10", "2000", symbol=ETH)]), Policy()),
        (snap("10000", [pos("0.4")]), Policy(release_excess=True)),
        (snap("10000", [pos("0.4")]), Policy(allow_increase=True)),
    ],
)
def test_plan_when_any_action_then_reason_has_rule_and_leverage_before_after(
    snapshot: AccountSnapshot, policy: Policy
) -> None:
    result = plan(snapshot, policy)
    assert result.actions
    for action in result.actions:
        reason = action.reason
        assert reason.rule in (Rule.DELEVER, Rule.RELEVER)
        assert reason.leverage_before is not None
        assert reason.leverage_after is not None
        assert "leverage" in reason.describe()
        assert reason.describe().count("->") == 1


# -- scopes that share one cross account -------------------------------------------------


@pytest.mark.parametrize(
    ("btc_target", "moved"),
    [
        # After the account transfer (E = 16666.67) BTC is at 1.8: inside 1.5..2.5.
        (Target(D(2), D("1.5"), D("2.5")), D("6666.67")),
        # 1.8 is above 1.7: the override tops up to 30000 / 1.5 = 20000 of equity.
        (Target(D("1.5"), D("1.2"), D("1.7")), D("10000.00")),
    ],
)
def test_plan_when_cross_symbol_override_then_planned_on_equity_after_account_actions(
    btc_target: Target, moved: D
) -> None:
    targets = Targets(BAND.account, {BTC: btc_target})
    positions = [pos("0.6"), pos("10", "2000", symbol=ETH)]
    result = plan(snap("10000", positions, source="50000"), targets=targets)
    assert sum((t.amount for t in transfers(result)), D(0)) == moved
    assert [d.scope for d in result.decisions] == [ACCOUNT, f"{ACCOUNT}/{BTC}"]
    btc = result.decisions[1]
    assert btc.leverage is not None  # what the account's transfer left, not 30000 / 10000
    assert abs(btc.leverage - D("1.8")) < D("0.0001")
    assert btc.expected_leverage is not None
    assert btc_target.min <= btc.expected_leverage <= btc_target.max


def test_plan_when_cross_symbol_override_after_account_orders_then_sees_reduced_position() -> None:
    # No collateral: the account reduces BTC and ETH to L = 3; BTC is then 18000 / ~9980.
    targets = Targets(BAND.account, {BTC: Target(D(2), D("1.5"), D("2.5"))})
    positions = [pos("0.6"), pos("10", "2000", symbol=ETH)]
    result = plan(snap("10000", positions), targets=targets)
    btc_orders = [o for o in orders(result) if o.symbol == BTC]
    assert sum((o.amount for o in btc_orders), D(0)) <= D("0.6")
    btc = result.decisions[1]
    assert btc.leverage is not None
    assert btc.leverage < D(2)  # 0.36 BTC on ~9980: inside its band, so no second cut
    assert len(btc_orders) == 1


def test_plan_when_isolated_needs_margin_beside_cross_positions_then_cross_stays_in_band() -> None:
    # Cross BTC 30000 on W 10000 sits at its target 3; isolated ETH is at 5.
    # Drawing the isolated margin from the cross wallet would push cross to 4.1 (> 3.5),
    # so the margin comes in from the source wallet.
    positions = [pos("0.6"), pos("10", "2000", symbol=ETH, isolated_margin="4000")]
    result = plan(snap("10000", positions, source="20000"))
    assert [a.kind for a in result.actions] == [ActionKind.TRANSFER_IN, ActionKind.ADD_MARGIN]
    transfer, adjustment = result.actions
    assert transfer.amount == adjustment.amount == D("2666.67")
    cross_wallet_after = D(10000) + transfer.amount - adjustment.amount
    assert D(30000) / cross_wallet_after <= D("3.5")


def test_plan_when_isolated_needs_margin_and_cross_has_surplus_then_surplus_is_used() -> None:
    # Cross at 30000 / 15000 = 2 could give 5000 and stay at its target 3.
    positions = [pos("0.6"), pos("10", "2000", symbol=ETH, isolated_margin="4000")]
    targets = Targets(Target(D(3), D(1), D("3.5")))
    result = plan(snap("15000", positions, source="20000"), targets=targets)
    assert [a.kind for a in result.actions] == [ActionKind.ADD_MARGIN]
    assert result.actions[0].amount == D("2666.67")


# -- isolated limits ---------------------------------------------------------------------


def test_plan_when_isolated_release_exceeds_its_margin_then_capped_at_the_margin() -> None:
    # Margin 1000 plus 20000 of unrealized profit: E_p = 21000, L_p = 2.38. The surplus
    # (4333.33) is mostly profit the exchange will not let go of: release the margin only.
    position = pos("1", entry="30000", isolated_margin="1000")
    result = plan(snap("0", [position]), Policy(release_excess=True))
    [adjustment] = result.actions
    assert isinstance(adjustment, MarginAdjustment)
    assert not adjustment.add
    assert adjustment.amount == D(1000)


def test_plan_when_isolated_and_margin_cannot_be_repledged_then_no_pointless_reduce() -> None:
    # Reducing an isolated leg releases its margin pro rata: without re-pledging it the
    # leverage stays at 5 and every cycle would cut the position again.
    result = plan(snap("0", [pos("1", isolated_margin="10000")], can_adjust_margin=False))
    assert result.empty
    assert "cannot add isolated margin" in notes(result)
    assert "leaves its leverage unchanged" in notes(result)


def test_plan_when_isolated_emergency_and_margin_cannot_be_repledged_then_still_cuts() -> None:
    targets = Targets(Target(D(3), D("2.5"), D("3.5"), emergency_margin_ratio=D("0.01")))
    result = plan(
        snap("0", [pos("1", isolated_margin="10000")], can_adjust_margin=False), targets=targets
    )
    assert [a.kind for a in result.actions] == [ActionKind.REDUCE_ORDER]
    assert result.emergency


def test_plan_when_emergency_inside_band_then_note_says_nothing_to_do() -> None:
    # The liquidation-distance threshold fires at the target itself: say so.
    targets = Targets(Target(D(3), D("2.5"), D("3.5"), emergency_liquidation_distance=D("0.5")))
    result = plan(snap("10000", [pos("0.6", liquidation="35000")]), targets=targets)
    assert result.empty
    assert result.decisions[0].rule is Rule.EMERGENCY
    assert "already at or below its target" in notes(result)
