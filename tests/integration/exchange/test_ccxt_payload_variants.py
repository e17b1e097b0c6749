"""Odd-but-real variations of the recorded payloads, through real ccxt over loopback HTTP.

Each variant starts from a real reply in `tests/fixtures/ccxt/` (ccxt's static fixtures,
or our authored loopback replies) and changes only what the venue is documented to
send in another account state: hedge mode, isolated legs, flat rows, empty strings,
missing mark prices, collateral in other coins, a market listed after ours were
loaded. Figures worked out by hand are in the comments.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from bot.domain.leverage import cross_equity, isolated_equity, scope_metrics
from bot.domain.models import AccountSnapshot, MarginMode, OrderSide, Side
from bot.domain.planner import plan_rebalance
from bot.domain.targets import Policy, Target, Targets
from bot.exchange.port import OrderRequest
from tests.integration.exchange.loopback import LoopbackVenue
from tests.integration.exchange.venues import (
    CLIENT_ID,
    adapter_for,
    recorded,
    recorded_loopback,
    serve,
)

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
LTC = "LTC/USDT:USDT"
MARK = Decimal("67502.68519858")  # BTCUSDT's markPrice in the recorded positionRisk row
# A band the recorded accounts sit far outside (BTC on Binance is at 23x): any trusted
# snapshot makes the planner act, so "no action" can only come from distrust.
TARGETS = Targets(Target(Decimal("3"), Decimal("2"), Decimal("4")))
POLICY = Policy(release_excess=True)


def binance_row(**changes: str) -> dict[str, Any]:
    """The recorded positionRisk v3 row (BTCUSDT, one-way mode, 0.009 long), changed."""
    row: dict[str, Any] = recorded("binance", "fetchPositions", 0)["httpResponse"][0]
    return {**row, **changes}


def bybit_positions(*rows: dict[str, Any]) -> dict[str, Any]:
    """The recorded /v5/position/list reply with `rows` as its list."""
    reply = copy.deepcopy(recorded("bybit", "fetchPositions")["httpResponse"])
    reply["result"]["list"] = list(rows)
    return reply


def bybit_row(**changes: object) -> dict[str, Any]:
    """The recorded Bybit position (LTCUSDT, one-way, 1.2 long at mark 71.1), changed."""
    row: dict[str, Any] = recorded("bybit", "fetchPositions")["httpResponse"]["result"]["list"][0]
    return {**row, **changes}


def okx_row(**changes: str) -> dict[str, Any]:
    """The recorded OKX position (LTC-USDT-SWAP, posSide long, 1 contract), changed."""
    row: dict[str, Any] = recorded("okx", "fetchPositions")["httpResponse"]["data"][0]
    return {**row, **changes}


def okx_positions(*rows: dict[str, Any]) -> dict[str, Any]:
    return {**recorded("okx", "fetchPositions")["httpResponse"], "data": list(rows)}


def no_action_note(snapshot: AccountSnapshot) -> tuple[str, ...]:
    plan = plan_rebalance(snapshot, TARGETS, POLICY, snapshot.taken_at)
    assert plan.actions == ()
    return plan.notes


# -- Binance USDⓈ-M -----------------------------------------------------------------


async def test_snapshot_when_binance_hedge_mode_with_a_flat_row_then_two_legs_and_no_flat_one(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    venue.reply("GET", "/fapi/v1/multiAssetsMargin", {"multiAssetsMargin": False})
    long = binance_row(positionSide="LONG")
    short = binance_row(
        positionSide="SHORT",
        positionAmt="-0.004",
        entryPrice="68000.0",
        notional="-270.01074079",
        unRealizedProfit="1.98925920",
        liquidationPrice="0",
        maintMargin="1.08004296",
    )
    # positionRisk v3 also lists symbols with open orders and no position.
    flat = binance_row(
        symbol="ETHUSDT",
        positionAmt="0.000",
        entryPrice="0.0",
        markPrice="3270.1",
        notional="0",
        unRealizedProfit="0.00000000",
        liquidationPrice="0",
        maintMargin="0",
    )
    venue.reply("GET", "/fapi/v3/positionRisk", [long, short, flat])
    async with adapter_for("binanceusdm", venue) as exchange:
        snapshot = await exchange.fetch_snapshot()

    assert venue.unmatched == []
    assert [(p.key, p.contracts) for p in snapshot.positions] == [
        (f"{BTC}:long", Decimal("0.009")),
        (f"{BTC}:short", Decimal("0.004")),
    ]
    assert snapshot.positions[1].liquidation_price is None  # "0": none reported
    assert set(snapshot.markets) == {BTC}
    # u_long  = 0.009 * (67502.68519858 - 67445.9)      = 0.51106678722
    # u_short = -0.004 * (67502.68519858 - 68000)       = 1.98925920568
    # E = W + u = 3.72964781 + 0.51106678722 + 1.98925920568 = 6.2299738029
    # N = (0.009 + 0.004) * 67502.68519858              = 877.53490758154 (gross, not net)
    equity = cross_equity(snapshot.derivatives.total, snapshot.positions)
    assert equity == Decimal("6.22997380290")
    metrics = scope_metrics(equity, snapshot.positions, snapshot.markets)
    assert metrics.notional == Decimal("877.53490758154")
    assert metrics.margin_ratio == (Decimal("2.43009666") + Decimal("1.08004296")) / equity


async def test_snapshot_when_binance_isolated_leg_then_isolated_wallet_is_its_margin(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    venue.reply("GET", "/fapi/v1/multiAssetsMargin", {"multiAssetsMargin": False})
    # v3 has no marginType: a non-zero isolatedMargin (wallet + uPnL) marks the leg.
    isolated = binance_row(
        symbol="ETHUSDT",
        positionAmt="-0.5",
        entryPrice="3300",
        markPrice="3270.1",
        notional="-1635.05",
        unRealizedProfit="14.95",
        isolatedMargin="178.45",
        isolatedWallet="163.5",
        liquidationPrice="3580.2",
        maintMargin="6.5402",
    )
    venue.reply("GET", "/fapi/v3/positionRisk", [binance_row(), isolated])
    async with adapter_for("binanceusdm", venue) as exchange:
        snapshot = await exchange.fetch_snapshot()

    (cross,) = snapshot.cross_positions()
    (leg,) = snapshot.isolated_positions()
    assert cross.symbol == BTC
    assert (leg.symbol, leg.side, leg.isolated_margin) == (ETH, Side.SHORT, Decimal("163.5"))
    # u_p = -0.5 * (3270.1 - 3300) = 14.95; E_p = 163.5 + 14.95 = 178.45 (= isolatedMargin)
    # n_p = 0.5 * 3270.1 = 1635.05; L_p = 1635.05 / 178.45 = 9.16251...
    assert isolated_equity(leg) == Decimal("178.45")
    metrics = scope_metrics(isolated_equity(leg), (leg,), snapshot.markets)
    assert metrics.leverage == Decimal("1635.05") / Decimal("178.45")
    assert round(metrics.leverage, 4) == Decimal("9.1625")
    # The cross equity leaves the isolated leg out: W + u_BTC = 3.72964781 + 0.51106678722
    assert cross_equity(snapshot.derivatives.total, (cross,)) == Decimal("4.24071459722")


@pytest.mark.parametrize(
    ("position_side", "amount", "side"),
    [("BOTH", "0.009", Side.LONG), ("BOTH", "-0.009", Side.SHORT), ("SHORT", "-0.009", Side.SHORT)],
)
@pytest.mark.parametrize("missing", ["0.00000000", ""])
async def test_snapshot_when_binance_mark_price_missing_then_leg_kept_and_planner_holds_off(
    venue: LoopbackVenue, position_side: str, amount: str, side: Side, missing: str
) -> None:
    serve(venue, "binanceusdm")
    # Without a mark the venue's notional is 0 too, and ccxt reads the side from it.
    row = binance_row(
        positionSide=position_side, positionAmt=amount, markPrice=missing, notional=missing
    )
    venue.reply("GET", "/fapi/v3/positionRisk", [row])
    # The account's row carries the same empty notional: no view of the leg has a mark.
    account = copy.deepcopy(recorded("binance", "fetchPositions", 2)["httpResponse"])
    account["positions"][0].update(positionSide=position_side, positionAmt=amount, notional=missing)
    venue.reply("GET", "/fapi/v3/account", account)
    async with adapter_for("binanceusdm", venue) as exchange:
        snapshot = await exchange.fetch_snapshot()

    (position,) = snapshot.positions
    assert (position.side, position.contracts, position.mark_price) == (
        side,
        Decimal("0.009"),
        None,
    )
    assert no_action_note(snapshot) == (f"no action: missing mark price for {BTC}",)


async def test_snapshot_when_binance_numbers_are_empty_strings_then_ccxt_figures_fill_in(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    row = binance_row(maintMargin="", liquidationPrice="", isolatedWallet="")
    venue.reply("GET", "/fapi/v3/positionRisk", [row])
    async with adapter_for("binanceusdm", venue) as exchange:
        snapshot = await exchange.fetch_snapshot()

    (position,) = snapshot.positions
    assert position.liquidation_price is None
    assert position.isolated_margin == Decimal("0")
    # ccxt's own figure: tier-1 rate 0.004 * |notional| 607.52416678 = 2.43009666712
    assert position.maintenance_margin == Decimal("2.43009666712")


async def test_snapshot_when_binance_multi_assets_without_usdt_then_pooled_equity_leads(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    account = copy.deepcopy(recorded("binance", "fetchPositions", 2)["httpResponse"])
    # All the collateral in USDC (and dust in BTC, BNB, ETH, FDUSD): no USDT row at all.
    account["assets"] = [row for row in account["assets"] if row["asset"] != "USDT"]
    assert {row["asset"] for row in account["assets"]} == {"FDUSD", "BTC", "BNB", "ETH", "USDC"}
    venue.reply("GET", "/fapi/v3/account", account)
    async with adapter_for("binanceusdm", venue) as exchange:
        snapshot = await exchange.fetch_snapshot()

    assert (snapshot.derivatives.total, snapshot.derivatives.free) == (Decimal(0), Decimal(0))
    # E = totalMarginBalance (USD, all assets) = 26.26840422, as with the USDT row:
    # L = 0.009 * 67502.68519858 / 26.26840422 = 23.1276...
    assert snapshot.pooled_equity == Decimal("26.26840422")
    metrics = scope_metrics(snapshot.pooled_equity, snapshot.positions, snapshot.markets)
    assert round(metrics.leverage or Decimal(0), 4) == Decimal("23.1276")


# -- a position on a market we did not load ------------------------------------------

UNLISTED: dict[str, tuple[str, str, str]] = {
    # venue: (positions path, markets path, the venue's id of a market we never loaded)
    "binanceusdm": ("/fapi/v3/positionRisk", "/fapi/v1/exchangeInfo", "NEWCOINUSDT"),
    "bybit": ("/v5/position/list", "/v5/market/instruments-info", "NEWCOINUSDT"),
    "okx": ("/api/v5/account/positions", "/api/v5/public/instruments", "NEWCOIN-USDT-SWAP"),
}


def with_unlisted(exchange_id: str, market_id: str) -> Any:
    """The recorded positions reply plus the same position on `market_id`."""
    if exchange_id == "binanceusdm":
        return [binance_row(), binance_row(symbol=market_id)]
    if exchange_id == "bybit":
        return bybit_positions(bybit_row(), bybit_row(symbol=market_id))
    return okx_positions(okx_row(), okx_row(instId=market_id))


@pytest.mark.parametrize("exchange_id", list(UNLISTED))
async def test_snapshot_when_position_on_unlisted_market_then_kept_and_markets_reloaded_once(
    venue: LoopbackVenue, exchange_id: str
) -> None:
    positions_path, markets_path, market_id = UNLISTED[exchange_id]
    serve(venue, exchange_id)
    venue.reply("GET", positions_path, with_unlisted(exchange_id, market_id))
    async with adapter_for(exchange_id, venue) as exchange:
        snapshot = await exchange.fetch_snapshot()
        loads = len(venue.calls(markets_path))
        await exchange.fetch_snapshot()
        reloads = len(venue.calls(markets_path)) - loads
        await exchange.fetch_snapshot()
        later = len(venue.calls(markets_path)) - loads - reloads

    # ccxt names the unknown market by the venue's id; its exposure is not dropped.
    assert market_id in {p.symbol for p in snapshot.positions}
    assert market_id not in snapshot.markets
    assert len(snapshot.positions) == 2
    assert no_action_note(snapshot) == (f"no action: unknown market rules for {market_id}",)
    # The next snapshot reloads the markets (a new listing appears); after that, a market
    # that stays unlisted (being delisted) costs no reload per cycle.
    assert loads > 0
    assert reloads == loads
    assert later == 0


# -- Bybit unified account ---------------------------------------------------------


async def test_snapshot_when_bybit_hedge_legs_and_a_flat_row_then_two_legs_on_pooled_equity(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "bybit")
    # The recorded fetchPosition reply: LTCUSDT with size "0", side "", avgPrice "0".
    flat = recorded("bybit", "fetchPosition")["httpResponse"]["result"]["list"][0]
    long = bybit_row(positionIdx=1, liqPrice="")
    short = bybit_row(
        positionIdx=2,
        side="Sell",
        size="0.5",
        avgPrice="73.2",
        positionValue="36.6",
        unrealisedPnl="1.05",
        positionMM="0.3555",
        liqPrice="140.5",
    )
    venue.reply("GET", "/v5/position/list", bybit_positions(flat, long, short))
    async with adapter_for("bybit", venue) as exchange:
        snapshot = await exchange.fetch_snapshot()

    assert venue.unmatched == []
    assert [(p.key, p.contracts, p.liquidation_price) for p in snapshot.positions] == [
        (f"{LTC}:long", Decimal("1.2"), None),
        (f"{LTC}:short", Decimal("0.5"), Decimal("140.5")),
    ]
    # The wallet holds USDC, BTC, ETH, ADA, XRP, USDT and LTC; E is the USD margin balance.
    # N = (1.2 + 0.5) * 71.1 = 120.87; MR = (0.81072399 + 0.3555) / 90042.2788482
    assert snapshot.pooled_equity == Decimal("90042.2788482")
    metrics = scope_metrics(snapshot.pooled_equity, snapshot.positions, snapshot.markets)
    assert metrics.notional == Decimal("120.87")
    assert metrics.leverage == Decimal("120.87") / Decimal("90042.2788482")
    assert metrics.margin_ratio == Decimal("1.16622399") / Decimal("90042.2788482")


async def test_snapshot_when_bybit_no_positions_and_no_usdt_coin_then_pooled_equity_only(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "bybit")
    balance = copy.deepcopy(recorded("bybit", "fetchBalance")["httpResponse"])
    account = balance["result"]["list"][0]
    account["coin"] = [coin for coin in account["coin"] if coin["coin"] != "USDT"]
    venue.reply("GET", "/v5/account/wallet-balance", balance)
    venue.reply("GET", "/v5/position/list", bybit_positions())
    async with adapter_for("bybit", venue) as exchange:
        snapshot = await exchange.fetch_snapshot()

    assert (snapshot.positions, snapshot.markets) == ((), {})
    assert (snapshot.derivatives.total, snapshot.derivatives.free) == (Decimal(0), Decimal(0))
    assert snapshot.pooled_equity == Decimal("90042.2788482")


async def test_snapshot_when_bybit_mark_price_empty_then_planner_holds_off(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "bybit")
    venue.reply("GET", "/v5/position/list", bybit_positions(bybit_row(markPrice="")))
    async with adapter_for("bybit", venue) as exchange:
        snapshot = await exchange.fetch_snapshot()

    (position,) = snapshot.positions
    assert (position.side, position.mark_price) == (Side.LONG, None)
    assert no_action_note(snapshot) == (f"no action: missing mark price for {LTC}",)


# -- OKX -------------------------------------------------------------------------------


def okx_multi_currency_balance() -> dict[str, Any]:
    """The authored trading balance in multi-currency margin: USDT, USDC and BTC."""
    balance = copy.deepcopy(recorded_loopback("okx", "GET /api/v5/account/balance"))
    account = balance["data"][0]
    usdt = account["details"][0]
    account["details"] += [
        {**usdt, "ccy": "USDC", "eq": "1000", "cashBal": "1000", "availEq": "1000"},
        {**usdt, "ccy": "BTC", "eq": "0.008", "cashBal": "0.008", "availEq": "0.008"},
    ]
    account.update(adjEq="1523.41", totalEq="1530.2", isoEq="0.05372")
    return balance


async def test_snapshot_when_okx_hedge_cross_and_isolated_legs_then_each_scoped_and_orders_follow(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "okx")
    venue.reply("GET", "/api/v5/account/balance", okx_multi_currency_balance())
    # notionalUsd follows the size (pos * ctVal 0.001 * markPx 68.24): the adapter checks it.
    long = okx_row(pos="3", liqPx="", notionalUsd="0.20472")
    short = okx_row(
        posSide="short",
        pos="2",
        avgPx="70.1",
        mgnMode="isolated",
        margin="0.05",
        liqPx="92.3",
        notionalUsd="0.13648",
    )
    venue.reply("GET", "/api/v5/account/positions", okx_positions(long, short))
    async with adapter_for("okx", venue) as exchange:
        snapshot = await exchange.fetch_snapshot()
        for leg in snapshot.positions:
            await exchange.create_order(
                OrderRequest(
                    symbol=leg.symbol,
                    side=leg.side.closing_order_side,
                    amount=Decimal(1),
                    reduce_only=True,
                    position_side=leg.side,
                    client_order_id=CLIENT_ID,
                    hedged=leg.hedged,
                )
            )

    (cross,) = snapshot.cross_positions()
    (leg,) = snapshot.isolated_positions()
    assert (cross.side, cross.contracts, cross.liquidation_price) == (Side.LONG, Decimal(3), None)
    assert (leg.side, leg.isolated_margin, leg.liquidation_price) == (
        Side.SHORT,
        Decimal("0.05"),
        Decimal("92.3"),
    )
    # Cross equity is adjEq (USD over USDT, USDC and BTC), not USDT's eq (28.21...).
    assert snapshot.pooled_equity == Decimal("1523.41")
    # u_p = -2 * 0.001 * (68.24 - 70.1) = 0.00372; E_p = 0.05 + 0.00372 = 0.05372
    # n_p = 2 * 0.001 * 68.24 = 0.13648; L_p = 0.13648 / 0.05372 = 2.5405...
    assert isolated_equity(leg) == Decimal("0.05372")
    metrics = scope_metrics(isolated_equity(leg), (leg,), snapshot.markets)
    assert metrics.leverage == Decimal("0.13648") / Decimal("0.05372")
    # Each closing order names its own leg and that leg's margin mode.
    sent = [call.json()[0] for call in venue.calls("/api/v5/trade/batch-orders", "POST")]
    assert [(o["posSide"], o["tdMode"], o["side"]) for o in sent] == [
        ("long", "cross", OrderSide.SELL.value),
        ("short", "isolated", OrderSide.BUY.value),
    ]
    assert all("reduceOnly" not in order for order in sent)


async def test_snapshot_when_okx_net_short_without_mark_price_then_planner_holds_off(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "okx")
    row = okx_row(posSide="net", pos="-2", avgPx="70.1", markPx="", liqPx="", mgnMode="cross")
    venue.reply("GET", "/api/v5/account/positions", okx_positions(row))
    async with adapter_for("okx", venue) as exchange:
        snapshot = await exchange.fetch_snapshot()

    (position,) = snapshot.positions
    assert (position.side, position.contracts, position.hedged) == (Side.SHORT, Decimal(2), False)
    assert (position.mark_price, position.margin_mode) == (None, MarginMode.CROSS)
    assert no_action_note(snapshot) == (f"no action: missing mark price for {LTC}",)
