"""Real exchange payloads, through real ccxt over loopback HTTP, into an AccountSnapshot.

Leverage and margin ratio are worked out by hand from the payloads (in the comments)
and compared with what the domain's `scope_metrics` makes of the snapshot.
"""

from __future__ import annotations

from decimal import Decimal

from bot.domain.leverage import cross_equity, scope_metrics
from bot.domain.models import MarginMode, Side
from tests.integration.exchange.loopback import LoopbackVenue
from tests.integration.exchange.venues import adapter_for, recorded, serve

BTC = "BTC/USDT:USDT"
LTC = "LTC/USDT:USDT"


async def test_snapshot_when_binance_multi_assets_then_pooled_equity_sets_leverage(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    async with adapter_for("binanceusdm", venue) as exchange:
        snapshot = await exchange.fetch_snapshot()

    assert venue.unmatched == []
    (position,) = snapshot.positions
    assert (position.symbol, position.side, position.margin_mode) == (BTC, Side.LONG, "cross")
    assert position.contracts == Decimal("0.009")
    assert position.entry_price == Decimal("67445.9")
    assert position.mark_price == Decimal("67502.68519858")
    assert position.liquidation_price == Decimal("64846.98753790")
    # positionRisk v3's own maintMargin (ccxt's maintenanceMargin is rate * notional).
    assert position.maintenance_margin == Decimal("2.43009666")
    # W is USDT's cross wallet; in multi-assets mode the equity is the USD margin balance.
    assert snapshot.derivatives.total == Decimal("3.72964781")
    assert snapshot.derivatives.free == Decimal("3.72964781")
    assert snapshot.pooled_equity == Decimal("26.26840422")
    # The spot wallet (authored reply): 500 free + 20 locked.
    assert snapshot.source is not None
    assert (snapshot.source.total, snapshot.source.free) == (Decimal("520"), Decimal("500"))

    # n = 0.009 * 1 * 67502.68519858          = 607.52416678722
    # E = totalMarginBalance                   = 26.26840422
    # L = 607.52416678722 / 26.26840422        = 23.1275627...
    # MR = maintMargin / E = 2.43009666 / 26.26840422 = 0.0925102...
    metrics = scope_metrics(snapshot.pooled_equity, snapshot.positions, snapshot.markets)
    assert metrics.notional == Decimal("0.009") * Decimal("67502.68519858")
    assert metrics.leverage == Decimal("607.52416678722") / Decimal("26.26840422")
    assert metrics.margin_ratio == Decimal("2.43009666") / Decimal("26.26840422")
    assert round(metrics.leverage, 4) == Decimal("23.1276")


async def test_snapshot_when_binance_single_asset_then_equity_is_wallet_plus_upnl(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    venue.reply("GET", "/fapi/v1/multiAssetsMargin", {"multiAssetsMargin": False})
    async with adapter_for("binanceusdm", venue) as exchange:
        snapshot = await exchange.fetch_snapshot()

    assert snapshot.pooled_equity is None
    assert len(snapshot.positions) == 1
    # u = 0.009 * (67502.68519858 - 67445.9) = 0.51106678722 (the payload's unRealizedProfit)
    # E = W + u = 3.72964781 + 0.51106678722 = 4.24071459722
    equity = cross_equity(snapshot.derivatives.total, snapshot.positions)
    assert equity == Decimal("4.24071459722")
    metrics = scope_metrics(equity, snapshot.positions, snapshot.markets)
    # L = 607.52416678722 / 4.24071459722
    assert metrics.leverage == Decimal("607.52416678722") / Decimal("4.24071459722")


async def test_snapshot_when_binance_tiers_loaded_then_they_match_the_brackets(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    async with adapter_for("binanceusdm", venue) as exchange:
        snapshot = await exchange.fetch_snapshot()

    # The real BTC table (response/binance.json's leverageBrackets option).
    tiers = snapshot.markets[BTC].tiers
    assert [(str(t.floor), str(t.rate)) for t in tiers[:3]] == [
        ("0", "0.004"),
        ("50000", "0.005"),
        ("250000", "0.01"),
    ]
    rules = snapshot.markets[BTC]
    assert (rules.amount_step, rules.min_amount, rules.min_cost) == (
        Decimal("0.001"),
        Decimal("0.001"),
        Decimal("100"),
    )


async def test_snapshot_when_binance_v2_balance_without_positions_then_wallet_only(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    balance = recorded("binance", "fetchBalance")["httpResponse"]
    venue.reply("GET", "/fapi/v3/account", balance)
    venue.reply("GET", "/fapi/v3/positionRisk", [])
    venue.reply("GET", "/fapi/v1/multiAssetsMargin", {"multiAssetsMargin": False})
    async with adapter_for("binanceusdm", venue) as exchange:
        snapshot = await exchange.fetch_snapshot()

    assert snapshot.positions == ()
    assert snapshot.derivatives.total == Decimal("31.02261200")
    assert snapshot.derivatives.free == Decimal("31.02261200")
    assert snapshot.markets == {}


async def test_snapshot_when_bybit_unified_then_margin_balance_is_equity(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "bybit")
    async with adapter_for("bybit", venue) as exchange:
        snapshot = await exchange.fetch_snapshot()

    assert venue.unmatched == []
    (position,) = snapshot.positions
    parsed = recorded("bybit", "fetchPositions")["parsedResponse"][0]
    assert position.symbol == LTC == parsed["symbol"]
    assert position.contracts == Decimal(str(parsed["contracts"]))  # 1.2
    assert position.entry_price == Decimal(str(parsed["entryPrice"]))  # 64.59947917
    assert position.mark_price == Decimal("71.1")
    assert position.maintenance_margin == Decimal("0.81072399")
    # ccxt leaves marginMode None on Bybit: the account's setting applies.
    assert position.margin_mode is MarginMode.CROSS
    # walletBalance excludes uPnL; free = wallet - locked - position IM (ccxt's reading).
    assert snapshot.derivatives.total == Decimal("3322.25896609")
    assert snapshot.derivatives.free == Decimal("3229.64065465")
    assert snapshot.pooled_equity == Decimal("90042.2788482")
    assert snapshot.source is not None and snapshot.source.free == Decimal("1010")
    # Through Bybit's raw add-margin endpoint (tests/.../test_bybit_isolated_margin.py).
    assert snapshot.can_adjust_margin is True

    # n = 1.2 * 1 * 71.1                      = 85.32
    # E = totalMarginBalance (USD, UTA)        = 90042.2788482
    # L = 85.32 / 90042.2788482                = 0.000947554...
    # MR = positionMM / E = 0.81072399 / 90042.2788482
    assert snapshot.pooled_equity is not None
    metrics = scope_metrics(snapshot.pooled_equity, snapshot.positions, snapshot.markets)
    assert metrics.notional == Decimal("85.32")
    assert metrics.leverage == Decimal("85.32") / Decimal("90042.2788482")
    assert metrics.margin_ratio == Decimal("0.81072399") / Decimal("90042.2788482")
    # The risk-limit tiers (fetched per symbol) start at notional 0.
    assert [t.rate for t in snapshot.markets[LTC].tiers] == [Decimal("0.01"), Decimal("0.015")]


async def test_snapshot_when_okx_single_currency_then_equity_is_eq_minus_isolated(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "okx")
    async with adapter_for("okx", venue) as exchange:
        snapshot = await exchange.fetch_snapshot()

    assert venue.unmatched == []
    (position,) = snapshot.positions
    assert position.symbol == LTC
    assert (position.contracts, position.contract_size) == (Decimal("1"), Decimal("0.001"))
    assert position.mark_price == Decimal("68.24")
    assert position.maintenance_margin == Decimal("0.00044356")
    # posSide "long": the account runs in long/short (hedge) mode.
    assert position.hedged is True
    assert snapshot.derivatives.total == Decimal("28.21006347")
    # The funding wallet holds TUSD only: nothing in USDT.
    assert snapshot.source is not None and snapshot.source.total == Decimal("0")

    # n = 1 * 0.001 * 68.24                   = 0.06824  (OKX's notionalUsd: 0.0682283992)
    # E = eq - isoEq = 28.21006347 - 0         = 28.21006347
    # L = 0.06824 / 28.21006347                = 0.00241899...
    # MR = mmr / E = 0.00044356 / 28.21006347
    assert snapshot.pooled_equity == Decimal("28.21006347")
    metrics = scope_metrics(snapshot.pooled_equity, snapshot.positions, snapshot.markets)
    assert metrics.notional == Decimal("0.06824")
    assert metrics.leverage == Decimal("0.06824") / Decimal("28.21006347")
    assert metrics.margin_ratio == Decimal("0.00044356") / Decimal("28.21006347")
    notional_usd = Decimal(
        recorded("okx", "fetchPositions")["httpResponse"]["data"][0]["notionalUsd"]
    )
    assert abs(metrics.notional - notional_usd) / notional_usd < Decimal("0.001")


async def test_snapshot_when_symbols_watched_then_other_positions_still_count(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    async with adapter_for("binanceusdm", venue, symbols=("ETH/USDT:USDT",)) as exchange:
        snapshot = await exchange.fetch_snapshot()

    # The BTC leg shares the cross collateral: it stays, marked as not acted on.
    assert [p.symbol for p in snapshot.positions] == [BTC]
    assert not snapshot.is_watched(snapshot.positions[0])
    assert set(snapshot.markets) == {BTC, "ETH/USDT:USDT"}
