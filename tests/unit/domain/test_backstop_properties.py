"""Properties of `plan_backstops` (issue 10), on generated accounts:

(a) a stop never exceeds its leg, and a leg's ladder never sums above the leg;
(b) a stop only reduces: its order side closes its leg;
(c) its trigger lies strictly between the mark and the liquidation price of the scope as
    the levels above it leave it (single leg: `leverage.liquidation_price`, replayed
    with the venue's fill mechanics; two legs: level 1 against the margin ratio 1 move,
    and the account's margin ratio at the level-1 marks is the danger point);
(d) deeper levels trigger further from the mark.
Derandomized: the same examples every run (like the config fuzz in `make test`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from bot.domain.backstop import plan_backstops
from bot.domain.leverage import liquidation_price, scope_metrics, unrealized_pnl
from bot.domain.models import AccountSnapshot, MarginMode, Position, Side, WalletBalance
from bot.domain.stops import BackstopSettings, Stop
from bot.domain.targets import Target, Targets
from bot.exchange.sim.markets import binance_usdm_markets

NOW = datetime(2021, 5, 19, 12, 0, tzinfo=UTC)
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
MARKETS = binance_usdm_markets()
MARKS = {BTC: D(30000), ETH: D(2000)}
PROPERTY = settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def backstop_settings(draw: st.DrawFn) -> BackstopSettings:
    return BackstopSettings(
        margin_ratio=draw(st.decimals(min_value="0.5", max_value="0.95", places=2)),
        liquidation_buffer=draw(
            st.none() | st.decimals(min_value="0.001", max_value="0.03", places=3)
        ),
        levels=draw(st.integers(min_value=1, max_value=4)),
        fraction=draw(st.none() | st.decimals(min_value="0.05", max_value="1", places=2)),
    )


def position(symbol: str, side: Side, notional: D, entry_move: D, margin: D | None) -> Position:
    mark = MARKS[symbol]
    return Position(
        symbol=symbol,
        side=side,
        contracts=max(D("0.001"), (notional / mark).quantize(D("0.001"))),
        entry_price=mark * (1 + entry_move),
        mark_price=mark,
        margin_mode=MarginMode.CROSS if margin is None else MarginMode.ISOLATED,
        isolated_margin=D(0) if margin is None else margin,
    )


def account(wallet: D, *positions: Position) -> AccountSnapshot:
    return AccountSnapshot(
        account="acct",
        settle="USDT",
        taken_at=NOW,
        derivatives=WalletBalance(wallet, wallet),
        source=None,
        positions=positions,
        markets=MARKETS,
    )


def check_reduces_and_fits(stops: tuple[Stop, ...], legs: tuple[Position, ...]) -> None:
    """(a), (b) and (d) for every leg."""
    for p in legs:
        ladder = [s for s in stops if (s.symbol, s.position_side) == (p.symbol, p.side)]
        assert sum((s.amount for s in ladder), D(0)) <= p.contracts
        assert [s.level for s in ladder] == sorted(s.level for s in ladder)
        for s in ladder:
            assert D(0) < s.amount <= p.contracts
            assert s.order_side is p.side.closing_order_side
        triggers = [s.trigger_price for s in ladder]
        # Further from the mark level by level: down for a long, up for a short.
        assert triggers == sorted(set(triggers), reverse=p.side is Side.LONG)


@PROPERTY
@given(
    side=st.sampled_from(Side),
    isolated=st.booleans(),
    leverage=st.decimals(min_value="2", max_value="60", places=1),
    entry_move=st.decimals(min_value="-0.05", max_value="0.05", places=3),
    size=st.decimals(min_value="200", max_value="4000000", places=0),
    slippage=st.decimals(min_value="0", max_value="0.002", places=4),
    config=backstop_settings(),
)
def test_plan_backstops_when_one_leg_then_ladder_inside_each_liquidation(
    side: Side,
    isolated: bool,
    leverage: D,
    entry_move: D,
    size: D,
    slippage: D,
    config: BackstopSettings,
) -> None:
    leg = position(BTC, side, size, entry_move, None)
    collateral = leg.contracts * MARKS[BTC] / leverage - unrealized_pnl(leg)
    assume(collateral > 0)
    if isolated:
        leg = position(BTC, side, size, entry_move, collateral)
    snapshot = account(D(0) if isolated else collateral, leg)
    plan = plan_backstops(snapshot, Targets(Target(D(10), D(8), D(12))), config, slippage)
    check_reduces_and_fits(plan.stops, (leg,))
    event(f"{len(plan.stops)} levels")

    # (c), replaying each fill as the venue does (the simulated exchange's mechanics).
    contracts, wallet, mark = leg.contracts, collateral, MARKS[BTC]
    rules = MARKETS[BTC]
    for stop in plan.stops:
        liquidation = liquidation_price(side, contracts, leg.entry_price, D(1), wallet, rules.tiers)
        if side is Side.LONG:
            assert (liquidation or D(0)) < stop.trigger_price < mark
        else:
            assert mark < stop.trigger_price
            assert liquidation is None or stop.trigger_price < liquidation
        fill = stop.trigger_price * (1 - side.sign * slippage)
        if isolated:
            wallet = wallet * (contracts - stop.amount) / contracts
        else:
            realized = side.sign * stop.amount * (fill - leg.entry_price)
            wallet += realized - rules.taker_fee * stop.amount * fill
        contracts -= stop.amount
        mark = stop.trigger_price


@PROPERTY
@given(
    btc_side=st.sampled_from(Side),
    eth_side=st.sampled_from(Side),
    leverage=st.decimals(min_value="2", max_value="40", places=1),
    btc_size=st.decimals(min_value="500", max_value="2000000", places=0),
    eth_size=st.decimals(min_value="500", max_value="2000000", places=0),
    slippage=st.decimals(min_value="0", max_value="0.002", places=4),
    margin_ratio=st.decimals(min_value="0.5", max_value="0.95", places=2),
)
def test_plan_backstops_when_two_cross_legs_then_level_1_at_the_danger_ratio(
    btc_side: Side,
    eth_side: Side,
    leverage: D,
    btc_size: D,
    eth_size: D,
    slippage: D,
    margin_ratio: D,
) -> None:
    legs = (
        position(BTC, btc_side, btc_size, D(0), None),
        position(ETH, eth_side, eth_size, D(0), None),
    )
    gross = sum(p.contracts * MARKS[p.symbol] for p in legs)
    wallet = gross / leverage
    config = BackstopSettings(margin_ratio=margin_ratio, liquidation_buffer=None)
    plan = plan_backstops(
        account(wallet, *legs), Targets(Target(D(10), D(8), D(12))), config, slippage
    )
    check_reduces_and_fits(plan.stops, legs)
    first = {s.symbol: s.trigger_price for s in plan.stops if s.level == 1}
    event(f"level 1 on {len(first)} legs")
    if len(first) < 2:
        return  # already past the danger point, or a long with no danger point
    moved = tuple(
        Position(p.symbol, p.side, p.contracts, p.entry_price, first[p.symbol]) for p in legs
    )
    equity = wallet + sum(unrealized_pnl(p) for p in moved)
    metrics = scope_metrics(equity, moved, MARKETS)
    # The account's own margin ratio at the level-1 marks is the danger point, short of 1.
    assert metrics.margin_ratio is not None
    assert abs(metrics.margin_ratio - margin_ratio) < D("1e-9")
    for p in legs:
        assert (first[p.symbol] < MARKS[p.symbol]) == (p.side is Side.LONG)
