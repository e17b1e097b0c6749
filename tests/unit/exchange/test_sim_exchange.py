"""The simulated exchange behind the Exchange port: transfers, margin, orders, funding."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from bot.domain.models import MarginMode, OrderSide, Side
from bot.exchange.port import (
    InsufficientFunds,
    InvalidOrder,
    MarginResult,
    OrderRequest,
    TransferResult,
    UnknownSymbol,
)
from bot.exchange.sim.exchange import SimulatedExchange
from bot.exchange.sim.markets import binance_usdm_markets

D = Decimal
NOW = datetime(2021, 5, 19, 12, 0, tzinfo=UTC)
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
WALLET = Decimal(10000)
RESERVE = Decimal(5000)
NONE = Decimal(0)
ISOLATED_MARGIN = Decimal(5000)


def make_exchange(
    derivatives: Decimal = WALLET,
    source: Decimal = RESERVE,
    slippage: Decimal = NONE,
    *,
    hedge_mode: bool = False,
    min_transfer: Decimal = NONE,
    account: str = "sim",
) -> SimulatedExchange:
    exchange = SimulatedExchange(
        markets=binance_usdm_markets(),
        clock=lambda: NOW,
        derivatives=derivatives,
        source=source,
        slippage=slippage,
        hedge_mode=hedge_mode,
        min_transfer=min_transfer,
        account=account,
    )
    exchange.set_mark(BTC, D(50000))
    exchange.set_mark(ETH, D(2000))
    return exchange


def order(
    side: OrderSide,
    amount: str,
    position_side: Side = Side.LONG,
    *,
    reduce_only: bool = True,
    symbol: str = BTC,
    client_order_id: str = "c1",
) -> OrderRequest:
    return OrderRequest(
        symbol=symbol,
        side=side,
        amount=D(amount),
        reduce_only=reduce_only,
        position_side=position_side,
        client_order_id=client_order_id,
    )


def state(exchange: SimulatedExchange) -> tuple[object, ...]:
    """Everything a rejected request must leave untouched."""
    legs = tuple(dataclasses.astuple(p) for p in exchange.positions())
    return exchange.wallet, exchange.source, legs


# -- transfers -------------------------------------------------------------------------


async def test_transfer_when_into_derivatives_then_source_pays_the_wallet() -> None:
    exchange = make_exchange()

    result = await exchange.transfer("USDT", D(1500), True, "t1")

    assert result.currency == "USDT"
    assert result.amount == D(1500)
    assert result.into_derivatives is True
    assert isinstance(result, TransferResult)
    assert exchange.source == D(3500)
    assert exchange.wallet == D(11500)


async def test_transfer_when_source_lacks_funds_then_insufficient_funds() -> None:
    exchange = make_exchange(source=D(100))
    before = state(exchange)

    with pytest.raises(InsufficientFunds):
        await exchange.transfer("USDT", D("100.01"), True, "t1")

    assert state(exchange) == before


async def test_transfer_when_out_within_free_then_wallet_pays_the_source() -> None:
    exchange = make_exchange()

    await exchange.transfer("USDT", D(10000), False, "t1")

    assert exchange.wallet == D(0)
    assert exchange.source == D(15000)


async def test_transfer_when_out_exceeds_free_then_insufficient_funds() -> None:
    exchange = make_exchange()
    # Long 1 BTC at 50000 on 20x ties up 50000 / 20 = 2500: free = 10000 - 2500 = 7500.
    exchange.open_position(BTC, Side.LONG, D(1))
    before = state(exchange)

    with pytest.raises(InsufficientFunds):
        await exchange.transfer("USDT", D("7500.01"), False, "t1")

    assert state(exchange) == before
    await exchange.transfer("USDT", D(7500), False, "t2")
    assert exchange.wallet == D(2500)


async def test_cross_free_when_position_loses_then_loss_and_initial_margin_are_held() -> None:
    exchange = make_exchange()
    exchange.open_position(BTC, Side.LONG, D(1))
    exchange.set_mark(BTC, D(48000))

    # equity 10000 - 2000 = 8000, initial margin 48000 / 20 = 2400.
    assert exchange.cross_free() == D(5600)
    with pytest.raises(InsufficientFunds):
        await exchange.transfer("USDT", D("5600.01"), False, "t1")


async def test_cross_free_when_position_gains_then_capped_by_the_wallet_balance() -> None:
    exchange = make_exchange()
    exchange.open_position(BTC, Side.LONG, D(1))
    exchange.set_mark(BTC, D(60000))

    # equity 20000 - initial 3000 = 17000, but unrealized profit cannot leave: W = 10000.
    assert exchange.cross_free() == D(10000)


async def test_transfer_when_currency_is_not_the_settle_currency_then_invalid_order() -> None:
    exchange = make_exchange()

    with pytest.raises(InvalidOrder):
        await exchange.transfer("BTC", D(1), True, "t1")


@pytest.mark.parametrize("amount", ["0", "-5", "9.99"])
async def test_transfer_when_amount_below_minimum_then_invalid_order(amount: str) -> None:
    exchange = make_exchange(min_transfer=D(10))
    before = state(exchange)

    with pytest.raises(InvalidOrder):
        await exchange.transfer("USDT", D(amount), True, "t1")

    assert state(exchange) == before


# -- isolated margin ---------------------------------------------------------------------


def isolated_long(exchange: SimulatedExchange, margin: Decimal = ISOLATED_MARGIN) -> None:
    exchange.open_position(
        BTC, Side.LONG, D(1), margin_mode=MarginMode.ISOLATED, isolated_margin=margin
    )


async def test_adjust_margin_when_adding_then_wallet_funds_the_position() -> None:
    exchange = make_exchange()
    isolated_long(exchange)

    result = await exchange.adjust_margin(BTC, Side.LONG, D(1000), add=True)

    assert result == MarginResult(symbol=BTC, side=Side.LONG, amount=D(1000), add=True)
    assert exchange.wallet == D(4000)
    assert exchange.positions()[0].isolated_margin == D(6000)


async def test_adjust_margin_when_adding_more_than_free_then_insufficient_funds() -> None:
    exchange = make_exchange()
    isolated_long(exchange)
    before = state(exchange)

    with pytest.raises(InsufficientFunds):
        await exchange.adjust_margin(BTC, Side.LONG, D("5000.01"), add=True)

    assert state(exchange) == before


async def test_adjust_margin_when_removing_within_limit_then_wallet_gets_it_back() -> None:
    exchange = make_exchange()
    isolated_long(exchange)

    # removable = margin + uPnL - initial = 5000 + 0 - 50000 / 20 = 2500
    await exchange.adjust_margin(BTC, Side.LONG, D(2500), add=False)

    assert exchange.positions()[0].isolated_margin == D(2500)
    assert exchange.wallet == D(7500)


async def test_adjust_margin_when_removing_past_limit_then_insufficient_funds() -> None:
    exchange = make_exchange()
    isolated_long(exchange)
    before = state(exchange)

    with pytest.raises(InsufficientFunds):
        await exchange.adjust_margin(BTC, Side.LONG, D("2500.01"), add=False)

    assert state(exchange) == before


async def test_adjust_margin_when_position_loses_then_removable_shrinks_by_the_loss() -> None:
    exchange = make_exchange()
    isolated_long(exchange)
    exchange.set_mark(BTC, D(48000))

    # removable = 5000 - 2000 - 48000 / 20 = 600
    with pytest.raises(InsufficientFunds):
        await exchange.adjust_margin(BTC, Side.LONG, D("600.01"), add=False)
    await exchange.adjust_margin(BTC, Side.LONG, D(600), add=False)

    assert exchange.positions()[0].isolated_margin == D(4400)


async def test_adjust_margin_when_position_gains_then_at_most_the_margin_is_removable() -> None:
    exchange = make_exchange()
    isolated_long(exchange)
    exchange.set_mark(BTC, D(60000))

    # 5000 + 10000 - 3000 = 12000 would pass, but only the 5000 pledged can come back.
    with pytest.raises(InsufficientFunds):
        await exchange.adjust_margin(BTC, Side.LONG, D("5000.01"), add=False)
    await exchange.adjust_margin(BTC, Side.LONG, D(5000), add=False)

    assert exchange.wallet == D(10000)


async def test_adjust_margin_when_position_is_cross_then_invalid_order() -> None:
    exchange = make_exchange()
    exchange.open_position(BTC, Side.LONG, D(1))

    with pytest.raises(InvalidOrder):
        await exchange.adjust_margin(BTC, Side.LONG, D(100), add=True)


async def test_adjust_margin_when_no_position_on_that_side_then_invalid_order() -> None:
    exchange = make_exchange()
    isolated_long(exchange)

    with pytest.raises(InvalidOrder):
        await exchange.adjust_margin(BTC, Side.SHORT, D(100), add=True)


@pytest.mark.parametrize("amount", ["0", "-1"])
async def test_adjust_margin_when_amount_not_positive_then_invalid_order(amount: str) -> None:
    exchange = make_exchange()
    isolated_long(exchange)

    with pytest.raises(InvalidOrder):
        await exchange.adjust_margin(BTC, Side.LONG, D(amount), add=False)


# -- reduce-only orders -------------------------------------------------------------------


async def test_create_order_when_reducing_a_long_then_sells_below_mark_and_books_pnl() -> None:
    exchange = make_exchange(slippage=D("0.0005"))
    exchange.set_mark(BTC, D(40000))
    exchange.open_position(BTC, Side.LONG, D(1))
    exchange.set_mark(BTC, D(50000))

    result = await exchange.create_order(order(OrderSide.SELL, "0.2"))

    # fill 50000 * (1 - 0.0005) = 49975; notional 0.2 * 49975 = 9995; fee 9995 * 0.0005
    # = 4.9975; realized 0.2 * (49975 - 40000) = 1995.
    assert result.average_price == D(49975)
    assert result.fee == D("4.9975")
    assert result.filled == result.amount == D("0.2")
    assert result.side is OrderSide.SELL
    assert result.status == "closed"
    assert exchange.wallet == D(10000) + D(1995) - D("4.9975")
    [leg] = exchange.positions()
    assert leg.contracts == D("0.8")
    assert leg.entry_price == D(40000)
    assert exchange.last_fill is not None
    assert exchange.last_fill.slippage_cost == D(5)  # 0.2 * (50000 - 49975)


async def test_create_order_when_reducing_a_short_then_buys_above_mark() -> None:
    exchange = make_exchange(slippage=D("0.001"))
    exchange.open_position(ETH, Side.SHORT, D(10))
    exchange.set_mark(ETH, D(1800))

    result = await exchange.create_order(
        order(OrderSide.BUY, "4", Side.SHORT, symbol=ETH, client_order_id="c9")
    )

    # fill 1800 * 1.001 = 1801.8; notional 7207.2; fee 3.6036; realized -4 * (1801.8 - 2000).
    assert result.average_price == D("1801.8")
    assert result.fee == D("3.6036")
    assert exchange.wallet == D(10000) + D("792.8") - D("3.6036")
    assert exchange.positions()[0].contracts == D(6)


async def test_create_order_when_reducing_isolated_then_margin_released_pro_rata() -> None:
    exchange = make_exchange()
    isolated_long(exchange, D(8000))
    exchange.set_mark(BTC, D(49000))

    await exchange.create_order(order(OrderSide.SELL, "0.25"))

    # released 8000 * 0.25 = 2000; realized 0.25 * -1000 = -250; fee 12250 * 0.0005.
    [leg] = exchange.positions()
    assert leg.isolated_margin == D(6000)
    assert exchange.wallet == D(2000) + D(2000) - D(250) - D("6.125")


async def test_create_order_when_fully_reduced_then_position_closed() -> None:
    exchange = make_exchange()
    isolated_long(exchange, D(8000))

    await exchange.create_order(order(OrderSide.SELL, "1"))

    assert exchange.positions() == []
    assert exchange.snapshot().positions == ()
    assert exchange.wallet == D(10000) - D(25)  # all margin back, fee 50000 * 0.0005


async def test_create_order_when_closing_below_min_cost_then_allowed() -> None:
    exchange = make_exchange()
    # 0.001 BTC at 50000 = 50 of notional, under the 100 minimum: closing is still allowed.
    exchange.open_position(BTC, Side.LONG, D("0.001"))

    await exchange.create_order(order(OrderSide.SELL, "0.001"))

    assert exchange.positions() == []


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        (order(OrderSide.SELL, "1.001"), "exceeds the position"),
        (order(OrderSide.SELL, "0.0015"), "breaks the 0.001 step"),
        (order(OrderSide.SELL, "0"), "not positive"),
        (order(OrderSide.SELL, "0.001"), "50 of notional, under min cost 100"),
        (order(OrderSide.BUY, "0.1"), "a buy cannot reduce a long"),
        (order(OrderSide.BUY, "0.1", Side.SHORT), "no short to reduce"),
    ],
)
async def test_create_order_when_reduce_breaks_a_rule_then_invalid_order(
    request_: OrderRequest, why: str
) -> None:
    exchange = make_exchange()
    exchange.open_position(BTC, Side.LONG, D(1))
    before = state(exchange)

    with pytest.raises(InvalidOrder):
        await exchange.create_order(request_)

    assert state(exchange) == before, why
    assert await exchange.fetch_order_by_client_id(BTC, request_.client_order_id) is None


async def test_create_order_when_under_minimum_amount_then_invalid_order() -> None:
    markets = binance_usdm_markets()
    markets[BTC] = dataclasses.replace(markets[BTC], min_amount=D("0.01"))
    exchange = SimulatedExchange(markets=markets, clock=lambda: NOW, derivatives=D(10000))
    exchange.set_mark(BTC, D(50000))
    exchange.open_position(BTC, Side.LONG, D(1))

    # 0.009 BTC keeps the 0.001 step and is worth 450 > min cost, but is under 0.01.
    with pytest.raises(InvalidOrder):
        await exchange.create_order(order(OrderSide.SELL, "0.009"))

    assert exchange.positions()[0].contracts == D(1)


async def test_create_order_when_client_id_reused_then_invalid_order_and_no_second_fill() -> None:
    exchange = make_exchange()
    exchange.open_position(BTC, Side.LONG, D(1))
    await exchange.create_order(order(OrderSide.SELL, "0.1", client_order_id="dup"))
    before = state(exchange)

    with pytest.raises(InvalidOrder):
        await exchange.create_order(order(OrderSide.SELL, "0.1", client_order_id="dup"))

    assert state(exchange) == before
    assert exchange.positions()[0].contracts == D("0.9")


# -- increase orders ----------------------------------------------------------------------


async def test_create_order_when_increasing_then_entry_is_the_weighted_average() -> None:
    exchange = make_exchange(derivatives=D(20000))
    exchange.open_position(BTC, Side.LONG, D(1))
    exchange.set_mark(BTC, D(56000))

    result = await exchange.create_order(order(OrderSide.BUY, "0.5", reduce_only=False))

    # entry (1 * 50000 + 0.5 * 56000) / 1.5 = 52000; fee 28000 * 0.0005 = 14.
    [leg] = exchange.positions()
    assert leg.contracts == D("1.5")
    assert leg.entry_price == D(52000)
    assert result.fee == D(14)
    assert exchange.wallet == D(20000) - D(14)


async def test_create_order_when_increasing_with_slippage_then_buys_above_mark() -> None:
    exchange = make_exchange(slippage=D("0.001"))

    result = await exchange.create_order(order(OrderSide.BUY, "0.1", reduce_only=False))

    [leg] = exchange.positions()
    assert result.average_price == D(50050)
    assert leg.entry_price == D(50050)
    assert leg.margin_mode is MarginMode.CROSS


async def test_create_order_when_increase_needs_more_than_free_then_insufficient_funds() -> None:
    exchange = make_exchange(derivatives=D(1000))
    before = state(exchange)

    # 0.4 BTC at 50000 needs 20000 / 20 = 1000 of initial margin plus a 10 fee.
    with pytest.raises(InsufficientFunds):
        await exchange.create_order(order(OrderSide.BUY, "0.4", reduce_only=False))

    assert state(exchange) == before
    await exchange.create_order(order(OrderSide.BUY, "0.396", reduce_only=False))


async def test_create_order_when_increase_uses_the_closing_side_then_invalid_order() -> None:
    exchange = make_exchange()
    exchange.open_position(BTC, Side.LONG, D(1))

    with pytest.raises(InvalidOrder):
        await exchange.create_order(order(OrderSide.SELL, "0.1", reduce_only=False))


async def test_create_order_when_one_way_mode_holds_the_other_side_then_invalid_order() -> None:
    exchange = make_exchange()
    exchange.open_position(BTC, Side.LONG, D(1))

    with pytest.raises(InvalidOrder):
        await exchange.create_order(order(OrderSide.SELL, "0.1", Side.SHORT, reduce_only=False))


async def test_create_order_when_increase_under_min_cost_then_invalid_order() -> None:
    exchange = make_exchange()

    with pytest.raises(InvalidOrder):
        await exchange.create_order(order(OrderSide.BUY, "0.001", reduce_only=False))

    assert exchange.positions() == []


# -- symbols and order lookup -------------------------------------------------------------


async def test_port_when_symbol_unknown_then_unknown_symbol() -> None:
    exchange = make_exchange()
    doge = "DOGE/USDT:USDT"

    with pytest.raises(UnknownSymbol):
        await exchange.create_order(order(OrderSide.SELL, "1", symbol=doge))
    with pytest.raises(UnknownSymbol):
        await exchange.adjust_margin(doge, Side.LONG, D(1), add=True)
    with pytest.raises(UnknownSymbol):
        await exchange.fetch_order_by_client_id(doge, "c1")
    with pytest.raises(UnknownSymbol):
        exchange.set_mark(doge, D(1))
    with pytest.raises(UnknownSymbol):
        exchange.open_position(doge, Side.LONG, D(1))


async def test_fetch_order_by_client_id_when_order_exists_then_returns_it() -> None:
    exchange = make_exchange()
    exchange.open_position(BTC, Side.LONG, D(1))
    placed = await exchange.create_order(order(OrderSide.SELL, "0.1", client_order_id="x1"))

    assert await exchange.fetch_order_by_client_id(BTC, "x1") == placed


async def test_fetch_order_by_client_id_when_never_seen_then_none() -> None:
    exchange = make_exchange()
    exchange.open_position(BTC, Side.LONG, D(1))
    await exchange.create_order(order(OrderSide.SELL, "0.1", client_order_id="x1"))

    assert await exchange.fetch_order_by_client_id(BTC, "x2") is None
    assert await exchange.fetch_order_by_client_id(ETH, "x1") is None


# -- hedge mode -------------------------------------------------------------------------


async def test_create_order_when_hedge_mode_then_each_leg_is_reduced_on_its_own() -> None:
    exchange = make_exchange(derivatives=D(20000), hedge_mode=True)
    exchange.open_position(BTC, Side.LONG, D(1))
    await exchange.create_order(order(OrderSide.SELL, "0.6", Side.SHORT, reduce_only=False))

    await exchange.create_order(order(OrderSide.SELL, "0.4", Side.LONG, client_order_id="c2"))
    await exchange.create_order(order(OrderSide.BUY, "0.1", Side.SHORT, client_order_id="c3"))

    legs = {p.side: p.contracts for p in exchange.positions()}
    assert legs == {Side.LONG: D("0.6"), Side.SHORT: D("0.5")}
    snapshot = exchange.snapshot()
    assert {p.key for p in snapshot.positions} == {f"{BTC}:long", f"{BTC}:short"}
    assert all(p.hedged for p in snapshot.positions)


async def test_create_order_when_hedge_leg_closed_then_other_leg_stays() -> None:
    exchange = make_exchange(hedge_mode=True)
    exchange.open_position(BTC, Side.LONG, D(1))
    exchange.open_position(BTC, Side.SHORT, D("0.5"))

    await exchange.create_order(order(OrderSide.BUY, "0.5", Side.SHORT))

    [leg] = exchange.positions()
    assert (leg.side, leg.contracts) == (Side.LONG, D(1))


# -- snapshot ---------------------------------------------------------------------------


async def test_fetch_snapshot_when_positions_open_then_reports_wallets_tiers_and_positions() -> (
    None
):
    exchange = make_exchange(derivatives=D(60000), min_transfer=D(1), account="desk")
    exchange.open_position(BTC, Side.LONG, D(2))
    exchange.set_mark(ETH, D(3000))
    exchange.open_position(
        ETH, Side.SHORT, D(100), margin_mode=MarginMode.ISOLATED, isolated_margin=D(30000)
    )
    exchange.set_mark(BTC, D(51000))

    snapshot = await exchange.fetch_snapshot()

    assert snapshot.account == "desk"
    assert snapshot.settle == "USDT"
    assert snapshot.taken_at == NOW
    assert snapshot.min_transfer == D(1)
    assert set(snapshot.markets) == {BTC, ETH}
    # W = 60000 - 30000 pledged; free = W + uPnL 2000 - initial 102000 / 20, at most W.
    assert snapshot.derivatives.total == D(30000)
    assert snapshot.derivatives.free == D(30000) + D(2000) - D(5100)
    assert snapshot.source is not None
    assert snapshot.source.total == snapshot.source.free == D(5000)
    btc, eth = sorted(snapshot.positions, key=lambda p: p.symbol)
    assert (btc.side, btc.contracts, btc.entry_price, btc.mark_price) == (
        Side.LONG,
        D(2),
        D(50000),
        D(51000),
    )
    assert btc.margin_mode is MarginMode.CROSS
    # BTC notional 102000 is in tier 2 (mmr 0.005, cum 50000 * 0.001 = 50).
    assert btc.maintenance_margin == D(102000) * D("0.005") - D(50)
    assert (eth.side, eth.margin_mode, eth.isolated_margin) == (
        Side.SHORT,
        MarginMode.ISOLATED,
        D(30000),
    )
    # ETH notional 300000 is in tier 3 (mmr 0.01, cum 100000 * 0.0015 + 250000 * 0.0035
    # = 150 + 875 = 1025).
    assert eth.maintenance_margin == D(3000) - D(1025)
    assert not btc.hedged and not eth.hedged
    assert exchange.cross_maintenance() == btc.maintenance_margin


# -- funding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "rate", "paid_in"),
    [
        (Side.LONG, "0.0001", "-5"),  # longs pay a positive rate: -1 * 0.0001 * 50000
        (Side.SHORT, "0.0001", "5"),  # shorts receive it
        (Side.LONG, "-0.0003", "15"),  # longs receive a negative rate
        (Side.SHORT, "-0.0003", "-15"),
    ],
)
async def test_apply_funding_when_cross_then_wallet_takes_minus_side_rate_notional(
    side: Side, rate: str, paid_in: str
) -> None:
    exchange = make_exchange()
    exchange.open_position(BTC, side, D(1))

    assert exchange.apply_funding(BTC, D(rate)) == D(paid_in)

    assert exchange.wallet == D(10000) + D(paid_in)


async def test_apply_funding_when_isolated_then_position_margin_takes_it() -> None:
    exchange = make_exchange()
    isolated_long(exchange)
    exchange.set_mark(BTC, D(40000))

    paid = exchange.apply_funding(BTC, D("0.0001"))

    # notional at the mark 40000: -1 * 0.0001 * 40000 = -4
    assert paid == D(-4)
    assert exchange.positions()[0].isolated_margin == D(4996)
    assert exchange.wallet == D(5000)


async def test_apply_funding_when_other_symbol_then_untouched() -> None:
    exchange = make_exchange()
    exchange.open_position(BTC, Side.LONG, D(1))

    assert exchange.apply_funding(ETH, D("0.01")) == D(0)
    assert exchange.wallet == D(10000)
