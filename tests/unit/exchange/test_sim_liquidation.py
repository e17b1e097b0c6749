"""Liquidation in the simulated exchange, checked against Binance's published formula.

Binance USDⓈ-M, one-way mode:

    LP = (WB - TMM1 + UPNL1 + cumB - Side1 * Position1 * EP1)
         / (Position1 * MMR_B - Side1 * Position1)

WB is the cross wallet balance (isolated: the position's isolated margin), TMM1 and
UPNL1 the maintenance margin and unrealized PnL of the account's other cross positions,
MMR_B and cumB the maintenance rate and amount of the tier holding the notional at LP.
Tier amounts, from the BTC table (floor, rate): (0, 0.004), (50000, 0.005),
(250000, 0.01): cum = 0, 50000 * 0.001 = 50, 50 + 250000 * 0.005 = 1300. ETH tier 1 is
(0, 0.005) with cum 0. Every expected price below is worked out by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bot.domain.leverage import maintenance_from_tiers
from bot.domain.models import MarginMode, Side
from bot.exchange.sim.exchange import SimulatedExchange
from bot.exchange.sim.markets import binance_usdm_markets

D = Decimal
NOW = datetime(2021, 5, 19, 12, 0, tzinfo=UTC)
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
TOLERANCE = D("1e-6")


def make_exchange(derivatives: Decimal) -> SimulatedExchange:
    exchange = SimulatedExchange(
        markets=binance_usdm_markets(), clock=lambda: NOW, derivatives=derivatives
    )
    exchange.set_mark(BTC, D(50000))
    exchange.set_mark(ETH, D(2000))
    return exchange


def isolated(
    symbol: str, side: Side, contracts: str, margin: str
) -> Callable[[], SimulatedExchange]:
    def build() -> SimulatedExchange:
        exchange = make_exchange(D(margin))
        exchange.open_position(
            symbol, side, D(contracts), margin_mode=MarginMode.ISOLATED, isolated_margin=D(margin)
        )
        return exchange

    return build


def cross_btc_long_with_eth_long() -> SimulatedExchange:
    exchange = make_exchange(D(20000))
    exchange.open_position(BTC, Side.LONG, D(1))
    exchange.open_position(ETH, Side.LONG, D(10))
    exchange.set_mark(ETH, D(1900))
    return exchange


def cross_eth_short_with_btc_long() -> SimulatedExchange:
    exchange = make_exchange(D(20000))
    exchange.open_position(ETH, Side.SHORT, D(10))
    exchange.open_position(BTC, Side.LONG, D("0.5"))
    exchange.set_mark(BTC, D(48000))
    return exchange


def cross_alone(side: Side) -> Callable[[], SimulatedExchange]:
    def build() -> SimulatedExchange:
        exchange = make_exchange(D(30000))
        exchange.open_position(BTC, side, D(3))
        return exchange

    return build


@dataclass(frozen=True)
class Worked:
    """A worked example: the account, the position to look at, and LP by hand."""

    name: str
    build: Callable[[], SimulatedExchange]
    symbol: str
    side: Side
    expected: Decimal


WORKED = [
    # Isolated long 1 BTC at 50000, isolated margin 10000. Tier 1 (mmr 0.004, cum 0):
    # LP = (10000 - 0 + 0 + 0 - 1*1*50000) / (1*0.004 - 1*1) = -40000 / -0.996
    #    = 40160.6425702811244979...; notional 40160.64 < 50000, so tier 1 holds.
    Worked(
        "isolated long, BTC tier 1",
        isolated(BTC, Side.LONG, "1", "10000"),
        BTC,
        Side.LONG,
        D("40160.6425702811244979919678714859"),
    ),
    # Isolated long 10 BTC at 50000 (notional 500000), isolated margin 100000.
    # Tier 2 would give (100000 + 50 - 500000) / (10*0.005 - 10) = 40195.98, notional
    # 401959.8 >= 250000: not tier 2. Tier 3 (mmr 0.01, cum 1300):
    # LP = (100000 + 1300 - 10*50000) / (10*0.01 - 10) = -398700 / -9.9
    #    = 40272.7272727272...; notional 402727.27 in [250000, 3000000): tier 3 holds.
    Worked(
        "isolated long, BTC tier 3 (cum 1300)",
        isolated(BTC, Side.LONG, "10", "100000"),
        BTC,
        Side.LONG,
        D("40272.7272727272727272727272727273"),
    ),
    # Isolated short 10 ETH at 2000, isolated margin 2000. ETH tier 1 (0.005, cum 0):
    # LP = (2000 + 0 - (-1)*10*2000) / (10*0.005 - (-1)*10) = 22000 / 10.05
    #    = 2189.05472636815920398...; notional 21890.55 < 100000: tier 1 holds.
    Worked(
        "isolated short, ETH tier 1",
        isolated(ETH, Side.SHORT, "10", "2000"),
        ETH,
        Side.SHORT,
        D("2189.05472636815920398009950248756"),
    ),
    # Cross long 3 BTC at 50000 alone on a 30000 wallet (notional 150000, tier 2):
    # LP = (30000 + 50 - 3*50000) / (3*0.005 - 3) = -119950 / -2.985
    #    = 40184.2546063651591289...; notional 120552.76 in [50000, 250000): tier 2.
    Worked(
        "cross long alone, BTC tier 2 (cum 50)",
        cross_alone(Side.LONG),
        BTC,
        Side.LONG,
        D("40184.2546063651591289782244556114"),
    ),
    # Cross short 3 BTC at 50000 alone on a 30000 wallet. Tier 2:
    # LP = (30000 + 50 - (-1)*3*50000) / (3*0.005 - (-1)*3) = 180050 / 3.015
    #    = 59718.0762852404643449...; notional 179154.23 in [50000, 250000): tier 2.
    Worked(
        "cross short alone, BTC tier 2 (cum 50)",
        cross_alone(Side.SHORT),
        BTC,
        Side.SHORT,
        D("59718.0762852404643449419568822554"),
    ),
    # Cross wallet 20000; long 1 BTC at 50000; long 10 ETH at 2000, ETH mark now 1900.
    # For BTC: TMM1 = ETH maintenance = 10*1900*0.005 = 95; UPNL1 = 10*(1900-2000) = -1000.
    # LP = (20000 - 95 + (-1000) + 0 - 1*1*50000) / (1*0.004 - 1*1) = -31095 / -0.996
    #    = 31219.8795180722891566...; notional 31219.88 < 50000: tier 1 holds.
    Worked(
        "cross long with a second position",
        cross_btc_long_with_eth_long,
        BTC,
        Side.LONG,
        D("31219.8795180722891566265060241"),
    ),
    # Cross wallet 20000; short 10 ETH at 2000; long 0.5 BTC at 50000, BTC mark now 48000.
    # For ETH: TMM1 = 0.5*48000*0.004 = 96; UPNL1 = 0.5*(48000-50000) = -1000.
    # LP = (20000 - 96 + (-1000) + 0 - (-1)*10*2000) / (10*0.005 - (-1)*10)
    #    = 38904 / 10.05 = 3871.04477611940298507...; notional 38710.45 < 100000: tier 1.
    Worked(
        "cross short with a second position",
        cross_eth_short_with_btc_long,
        ETH,
        Side.SHORT,
        D("3871.04477611940298507462686567"),
    ),
]
IDS = [case.name for case in WORKED]


def reported_liquidation_price(exchange: SimulatedExchange, symbol: str, side: Side) -> Decimal:
    [position] = [p for p in exchange.snapshot().positions if p.symbol == symbol and p.side is side]
    assert position.liquidation_price is not None
    return position.liquidation_price


def equity_and_maintenance_at(
    exchange: SimulatedExchange, symbol: str, side: Side, price: Decimal
) -> tuple[Decimal, Decimal]:
    """The scope's equity and maintenance margin with `symbol` marked at `price`."""
    [leg] = [p for p in exchange.positions() if p.symbol == symbol and p.side is side]
    if leg.margin_mode is MarginMode.CROSS:
        marks = {symbol: price}
        return exchange.cross_equity(marks), exchange.cross_maintenance(marks)
    equity = leg.isolated_margin + side.sign * leg.contracts * (price - leg.entry_price)
    tiers = exchange.markets[symbol].tiers
    return equity, maintenance_from_tiers(tiers, leg.contracts * price)


@pytest.mark.parametrize("case", WORKED, ids=IDS)
def test_liquidation_price_when_worked_by_hand_then_simulator_agrees(case: Worked) -> None:
    exchange = case.build()

    price = reported_liquidation_price(exchange, case.symbol, case.side)

    assert abs(price - case.expected) < TOLERANCE


@pytest.mark.parametrize("case", WORKED, ids=IDS)
def test_liquidation_price_when_marked_there_then_equity_equals_maintenance(
    case: Worked,
) -> None:
    exchange = case.build()
    price = reported_liquidation_price(exchange, case.symbol, case.side)

    equity, maintenance = equity_and_maintenance_at(exchange, case.symbol, case.side, price)

    assert abs(equity - maintenance) < TOLERANCE


@pytest.mark.parametrize("case", WORKED, ids=IDS)
def test_check_liquidation_when_bar_reaches_the_liquidation_price_then_liquidates(
    case: Worked,
) -> None:
    exchange = case.build()
    price = reported_liquidation_price(exchange, case.symbol, case.side)

    assert exchange.check_liquidation(case.symbol, {Side.LONG: price, Side.SHORT: price})

    assert (NOW, case.symbol, case.side) in exchange.liquidated
    assert all(p.side is not case.side or p.symbol != case.symbol for p in exchange.positions())


@pytest.mark.parametrize("case", WORKED, ids=IDS)
def test_check_liquidation_when_bar_stops_just_short_of_it_then_survives(case: Worked) -> None:
    exchange = case.build()
    price = reported_liquidation_price(exchange, case.symbol, case.side)
    # A millionth of a dollar on the safe side: above LP for a long, below for a short.
    safe = price + case.side.sign * D("0.000001")

    assert not exchange.check_liquidation(case.symbol, {Side.LONG: safe, Side.SHORT: safe})

    assert exchange.liquidated == []


def test_check_liquidation_when_equity_exactly_equals_maintenance_then_liquidates() -> None:
    # Isolated long 1 BTC at 50000 with margin 10160: at 40000 equity = 10160 - 10000
    # = 160 and maintenance = 40000 * 0.004 = 160. LP = (10160 - 50000) / -0.996 = 40000.
    exchange = isolated(BTC, Side.LONG, "1", "10160")()
    assert reported_liquidation_price(exchange, BTC, Side.LONG) == D(40000)

    assert not exchange.check_liquidation(BTC, {Side.LONG: D("40000.01"), Side.SHORT: D(0)})
    assert exchange.check_liquidation(BTC, {Side.LONG: D(40000), Side.SHORT: D(0)})


def test_liquidation_price_when_long_margin_covers_the_notional_then_none() -> None:
    # (60000 - 50000) / -0.996 < 0: no positive price liquidates it.
    exchange = isolated(BTC, Side.LONG, "1", "60000")()

    [position] = exchange.snapshot().positions

    assert position.liquidation_price is None
    assert not exchange.check_liquidation(BTC, {Side.LONG: D("0.1"), Side.SHORT: D("0.1")})


def test_check_liquidation_when_only_the_bar_low_crosses_then_long_liquidated() -> None:
    exchange = isolated(BTC, Side.LONG, "1", "10000")()
    exchange.set_mark(BTC, D(45000))

    # The close (the mark) stays far from 40160.64; the low goes through it.
    hit = exchange.check_liquidation(BTC, {Side.LONG: D(40100), Side.SHORT: D(46000)})

    assert hit
    assert exchange.positions() == []
    assert exchange.liquidated == [(NOW, BTC, Side.LONG)]
    # The isolated margin is lost; the cross wallet (0 here) is untouched.
    assert exchange.wallet == D(0)


def test_check_liquidation_when_only_the_bar_high_crosses_then_short_liquidated() -> None:
    exchange = isolated(ETH, Side.SHORT, "10", "2000")()

    assert not exchange.check_liquidation(ETH, {Side.LONG: D(1000), Side.SHORT: D(2189)})
    assert exchange.check_liquidation(ETH, {Side.LONG: D(1000), Side.SHORT: D(2190)})

    assert exchange.liquidated == [(NOW, ETH, Side.SHORT)]


def test_check_liquidation_when_isolated_leg_liquidated_then_cross_account_untouched() -> None:
    exchange = make_exchange(D(30000))
    exchange.open_position(
        BTC, Side.LONG, D(1), margin_mode=MarginMode.ISOLATED, isolated_margin=D(10000)
    )
    exchange.open_position(ETH, Side.LONG, D(10))

    assert exchange.check_liquidation(BTC, {Side.LONG: D(40000), Side.SHORT: D(50000)})

    assert exchange.wallet == D(20000)
    assert [(p.symbol, p.margin_mode) for p in exchange.positions()] == [(ETH, MarginMode.CROSS)]


def test_check_liquidation_when_cross_account_fails_then_all_cross_positions_go() -> None:
    exchange = cross_btc_long_with_eth_long()

    # BTC low 31000 < LP 31219.88: the whole cross account (BTC and ETH) is liquidated
    # and the cross wallet is lost.
    assert exchange.check_liquidation(BTC, {Side.LONG: D(31000), Side.SHORT: D(52000)})

    assert exchange.wallet == D(0)
    assert exchange.positions() == []
    assert sorted(exchange.liquidated) == [(NOW, BTC, Side.LONG), (NOW, ETH, Side.LONG)]


def test_check_liquidation_when_cross_account_fails_then_isolated_positions_stay() -> None:
    exchange = make_exchange(D(32000))
    exchange.open_position(
        ETH, Side.LONG, D(10), margin_mode=MarginMode.ISOLATED, isolated_margin=D(2000)
    )
    exchange.open_position(BTC, Side.LONG, D(3))
    # Cross wallet 30000: BTC LP = (30000 + 50 - 150000) / -2.985 = 40184.25 (tier 2).

    assert exchange.check_liquidation(BTC, {Side.LONG: D(40184), Side.SHORT: D(51000)})

    assert exchange.wallet == D(0)
    [survivor] = exchange.positions()
    assert (survivor.symbol, survivor.margin_mode, survivor.isolated_margin) == (
        ETH,
        MarginMode.ISOLATED,
        D(2000),
    )


def test_check_liquidation_when_cross_account_healthy_then_nothing_changes() -> None:
    exchange = cross_btc_long_with_eth_long()

    assert not exchange.check_liquidation(BTC, {Side.LONG: D(31300), Side.SHORT: D(52000)})

    assert exchange.wallet == D(20000)
    assert len(exchange.positions()) == 2


def test_check_liquidation_when_symbol_has_no_position_then_false() -> None:
    exchange = isolated(BTC, Side.LONG, "1", "10000")()

    assert not exchange.check_liquidation(ETH, {Side.LONG: D(1), Side.SHORT: D(1)})


@settings(max_examples=150, deadline=None)
@given(
    symbol=st.sampled_from([BTC, ETH]),
    side=st.sampled_from([Side.LONG, Side.SHORT]),
    millis=st.integers(min_value=1, max_value=2_000_000),
    entry=st.decimals(min_value=100, max_value=100_000, places=2),
    leverage=st.integers(min_value=1, max_value=125),
    margin_mode=st.sampled_from([MarginMode.ISOLATED, MarginMode.CROSS]),
)
def test_check_liquidation_when_bar_reaches_any_reported_price_then_fires_there_only(
    symbol: str,
    side: Side,
    millis: int,
    entry: Decimal,
    leverage: int,
    margin_mode: MarginMode,
) -> None:
    contracts = D(millis) / 1000
    margin = contracts * entry / leverage

    def build() -> SimulatedExchange:
        exchange = make_exchange(margin)
        exchange.set_mark(symbol, entry)
        exchange.open_position(
            symbol, side, contracts, margin_mode=margin_mode, isolated_margin=margin
        )
        return exchange

    [position] = build().snapshot().positions
    assume(position.liquidation_price is not None)  # a 1x long cannot be liquidated
    price = position.liquidation_price
    assert price is not None
    safe = price + side.sign * D("0.000001")

    assert not build().check_liquidation(symbol, {Side.LONG: safe, Side.SHORT: safe})
    assert build().check_liquidation(symbol, {Side.LONG: price, Side.SHORT: price})
