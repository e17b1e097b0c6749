"""Hyperliquid through real ccxt over loopback HTTP: snapshots, margin tiers, environments.

Real clearinghouse states from ccxt's static fixtures (tests/fixtures/ccxt/response/
hyperliquid.json) go in; leverage, margin ratio and maintenance margin are worked out by
hand in the comments and compared with what the domain makes of the snapshot.
Every info call is POST /info (its body's `type` says which); every signed action is
POST /exchange.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from bot.domain.leverage import (
    cross_equity,
    isolated_equity,
    maintenance_from_tiers,
    scope_metrics,
    unrealized_pnl,
)
from bot.domain.models import MaintenanceTier, MarginMode, Side
from bot.exchange.ccxt import CcxtExchange, CcxtSettings, profile_for
from bot.exchange.ccxt.settings import CollateralSource, Environment
from bot.exchange.port import CapabilityMissing
from tests.integration.exchange.loopback import LoopbackVenue, RecordedRequest, Reply
from tests.integration.exchange.venues import (
    FAST_RETRY,
    FIXTURES,
    TEST_CREDENTIALS,
    quicken,
)

SOL = "SOL/USDC:USDC"
ETH = "ETH/USDC:USDC"
HYPE = "HYPE/USDC:USDC"
DOGE = "DOGE/USDC:USDC"
WALLET = TEST_CREDENTIALS["hyperliquid"]["wallet_address"]


def recorded_reply(method: str, description: str) -> Any:
    """What Hyperliquid sent for one of ccxt's recorded calls (response/hyperliquid.json)."""
    cases = json.loads((FIXTURES / "response" / "hyperliquid.json").read_text())["methods"]
    case = next(case for case in cases[method] if case["description"] == description)
    return case["httpResponse"]


def authored_reply(key: str) -> Any:
    """A reply ccxt's fixtures do not record (loopback/hyperliquid.json)."""
    return json.loads((FIXTURES / "loopback" / "hyperliquid.json").read_text())["replies"][key]


CROSS_ACCOUNT = recorded_reply("fetchPositions", "fetch positions")
ISOLATED_ACCOUNT = recorded_reply("fetchPositions", "isolated short position")
SPOT_WALLET = recorded_reply("fetchBalance", "fetchBalance spot with used")


def serve_hyperliquid(
    venue: LoopbackVenue, clearinghouse: Any = CROSS_ACCOUNT, *, abstraction: str = "default"
) -> dict[str, Any]:
    """Answer as Hyperliquid for the account whose perp clearinghouse state is given.

    Returns the info replies by type: a test may replace one (e.g. orderStatus).
    """
    meta = authored_reply("meta")
    info: dict[str, Any] = {
        "spotMeta": authored_reply("spotMeta"),
        "metaAndAssetCtxs": [meta, authored_reply("assetCtxs")],
        "meta": meta,
        "userAbstraction": abstraction,
        "clearinghouseState": clearinghouse,
        "spotClearinghouseState": SPOT_WALLET,
        "orderStatus": authored_reply("orderStatus unknown"),
    }
    actions = {"order": recorded_reply("createOrder", "create order")}

    def answer_info(request: RecordedRequest) -> Reply:
        kind = request.json().get("type")
        if kind not in info:
            # What Hyperliquid answers to an info type it does not know.
            return Reply(422, "Failed to deserialize the JSON body into the target type")
        return Reply(200, json.dumps(info[kind]))

    def answer_action(request: RecordedRequest) -> Reply:
        kind = request.json()["action"]["type"]
        return Reply(200, actions.get(kind, authored_reply("exchange ok")))

    venue.respond("POST", "/info", answer_info)
    venue.respond("POST", "/exchange", answer_action)
    return info


def hyperliquid_settings(
    venue: LoopbackVenue | None = None,
    *,
    environment: Environment = "live",
    collateral_source: CollateralSource = "spot",
    settle: str = "USDC",
    symbols: tuple[str, ...] = (),
) -> CcxtSettings:
    return CcxtSettings(
        account="test-hyperliquid",
        exchange_id="hyperliquid",
        environment=environment,
        credentials=TEST_CREDENTIALS["hyperliquid"],
        settle=settle,
        collateral_source=collateral_source,
        api_base_url=venue.url if venue is not None else None,
        symbols=symbols,
    )


def hyperliquid_adapter(
    venue: LoopbackVenue, *, environment: Environment = "live", symbols: tuple[str, ...] = ()
) -> CcxtExchange:
    """The adapter on the loopback venue, its ccxt instance built by the profile."""
    settings = hyperliquid_settings(venue, environment=environment, symbols=symbols)
    profile = profile_for("hyperliquid")
    exchange = quicken(profile.build(settings))
    return CcxtExchange(settings, profile, exchange=exchange, retry=FAST_RETRY)


def info_calls(venue: LoopbackVenue, kind: str) -> list[dict[str, Any]]:
    bodies = [call.json() for call in venue.calls("/info", "POST")]
    return [body for body in bodies if body.get("type") == kind]


# -- snapshots ------------------------------------------------------------------------------


async def test_snapshot_when_cross_account_then_leverage_and_margin_ratio_match_by_hand(
    venue: LoopbackVenue,
) -> None:
    serve_hyperliquid(venue, CROSS_ACCOUNT)
    async with hyperliquid_adapter(venue) as exchange:
        snapshot = await exchange.fetch_snapshot()

    assert venue.unmatched == []
    sol, eth = sorted(snapshot.positions, key=lambda p: p.symbol, reverse=True)
    assert (sol.symbol, sol.side, sol.margin_mode) == (SOL, Side.LONG, MarginMode.CROSS)
    assert (eth.symbol, eth.side, eth.margin_mode) == (ETH, Side.LONG, MarginMode.CROSS)
    # The mark is positionValue / |szi|: 463.9594 / 3.34 and 13694.04 / 3.6.
    assert (sol.contracts, sol.entry_price, sol.mark_price) == (
        Decimal("3.34"),
        Decimal("112.0945"),
        Decimal("138.91"),
    )
    assert (eth.contracts, eth.entry_price, eth.mark_price) == (
        Decimal("3.6"),
        Decimal("1100"),
        Decimal("3803.9"),
    )
    # Hyperliquid reports no per-position maintenance margin: it comes from the tiers.
    assert sol.maintenance_margin is None and eth.maintenance_margin is None
    # W = cross totalRawUsd + sum(szi * entryPx)
    #   = 5604.484055 + 3.34 * 112.0945 + 3.6 * 1100
    #   = 5604.484055 + 374.39563 + 3960          = 9938.879685
    # free = withdrawable                         = 19047.685485
    assert snapshot.derivatives.total == Decimal("9938.879685")
    assert snapshot.derivatives.free == Decimal("19047.685485")
    assert snapshot.pooled_equity is None
    # The spot wallet: 50 USDC, 10 of it on hold.
    assert snapshot.source is not None
    assert (snapshot.source.total, snapshot.source.free) == (Decimal("50"), Decimal("40"))
    assert snapshot.can_adjust_margin is True

    # u_SOL = 3.34 * (138.91 - 112.0945) = 3.34 * 26.8155   = 89.56377
    # u_ETH = 3.6 * (3803.9 - 1100)      = 3.6 * 2703.9     = 9734.04
    # E = W + u = 9938.879685 + 89.56377 + 9734.04           = 19762.483455
    #   (= crossMarginSummary.accountValue, to the last digit)
    assert unrealized_pnl(sol) == Decimal("89.56377")
    assert unrealized_pnl(eth) == Decimal("9734.04")
    equity = cross_equity(snapshot.derivatives.total, snapshot.cross_positions())
    account_value = CROSS_ACCOUNT["crossMarginSummary"]["accountValue"]
    assert equity == Decimal("19762.483455") == Decimal(account_value)
    # N = 463.9594 + 13694.04                                = 14157.9994 (totalNtlPos)
    # L = 14157.9994 / 19762.483455                          = 0.716408...
    # Both flat 50x tables: MMR = 1 / (2 * 50) = 0.01
    # MM = 0.01 * 463.9594 + 0.01 * 13694.04 = 4.639594 + 136.9404 = 141.579994
    #   (= the payload's crossMaintenanceMarginUsed)
    # MR = 141.579994 / 19762.483455                         = 0.00716408...
    #   (= L / 100: every leg's rate is 0.01)
    metrics = scope_metrics(equity, snapshot.cross_positions(), snapshot.markets)
    assert metrics.notional == Decimal("14157.9994")
    assert metrics.leverage == Decimal("14157.9994") / Decimal("19762.483455")
    assert round(metrics.leverage, 6) == Decimal("0.716408")
    assert metrics.maintenance == Decimal("141.579994")
    assert metrics.maintenance == Decimal(CROSS_ACCOUNT["crossMaintenanceMarginUsed"])
    assert metrics.margin_ratio == Decimal("141.579994") / Decimal("19762.483455")
    assert round(metrics.margin_ratio, 8) == Decimal("0.00716408")


async def test_snapshot_when_cross_short_and_long_then_equity_is_the_account_value(
    venue: LoopbackVenue,
) -> None:
    account = recorded_reply("fetchPositions", "short position")
    serve_hyperliquid(venue, account)
    async with hyperliquid_adapter(venue) as exchange:
        snapshot = await exchange.fetch_snapshot()

    sol, eth = sorted(snapshot.positions, key=lambda p: p.symbol, reverse=True)
    # Marks: 68.98 / 0.5 = 137.96 and 3819.2 / 1.6 = 2387.
    assert (sol.side, sol.contracts, sol.mark_price) == (
        Side.SHORT,
        Decimal("0.5"),
        Decimal("137.96"),
    )
    assert (eth.side, eth.contracts, eth.mark_price) == (Side.LONG, Decimal("1.6"), Decimal("2387"))
    # W = 7773.996934 + (-0.5) * 138.76 + 1.6 * 1100
    #   = 7773.996934 - 69.38 + 1760                         = 9464.616934
    # u = -0.5 * (137.96 - 138.76) + 1.6 * (2387 - 1100)
    #   = 0.4 + 2059.2                                       = 2059.6
    # E = 9464.616934 + 2059.6                               = 11524.216934 (accountValue)
    assert snapshot.derivatives.total == Decimal("9464.616934")
    equity = cross_equity(snapshot.derivatives.total, snapshot.cross_positions())
    assert equity == Decimal("11524.216934")
    assert equity == Decimal(account["crossMarginSummary"]["accountValue"])
    # MM = 0.01 * (68.98 + 3819.2) = 38.8818 (crossMaintenanceMarginUsed)
    metrics = scope_metrics(equity, snapshot.cross_positions(), snapshot.markets)
    assert metrics.maintenance == Decimal(account["crossMaintenanceMarginUsed"])


async def test_snapshot_when_isolated_short_then_equity_is_margin_plus_upnl(
    venue: LoopbackVenue,
) -> None:
    serve_hyperliquid(venue, ISOLATED_ACCOUNT)
    async with hyperliquid_adapter(venue) as exchange:
        snapshot = await exchange.fetch_snapshot()

    (hype,) = snapshot.positions
    assert (hype.symbol, hype.side, hype.margin_mode) == (HYPE, Side.SHORT, MarginMode.ISOLATED)
    assert (hype.contracts, hype.entry_price) == (Decimal("4"), Decimal("47.9932"))
    # mark = positionValue / |szi| = 192.58 / 4 = 48.145
    assert hype.mark_price == Decimal("48.145")
    assert hype.liquidation_price == Decimal("50.2724802381")
    # The cross account holds no position: W = totalRawUsd = withdrawable.
    assert snapshot.derivatives.total == Decimal("57.6421")
    assert snapshot.derivatives.free == Decimal("57.6421")
    assert snapshot.cross_positions() == ()

    # Isolated margin without uPnL = rawUsd + szi * entryPx
    #   = 211.144417 + (-4) * 47.9932 = 211.144417 - 191.9728   = 19.171617
    # u = -4 * (48.145 - 47.9932) = -4 * 0.1518                  = -0.6072
    # E_p = 19.171617 - 0.6072                                   = 18.564417
    #   (= the payload's marginUsed: Hyperliquid's isolated equity)
    assert hype.isolated_margin == Decimal("19.171617")
    assert unrealized_pnl(hype) == Decimal("-0.6072")
    equity = isolated_equity(hype)
    assert equity == Decimal("18.564417")
    assert equity == Decimal(ISOLATED_ACCOUNT["assetPositions"][0]["position"]["marginUsed"])
    # n = 192.58; flat 10x table: MMR = 1 / 20 = 0.05, MM = 9.629
    # L_p = 192.58 / 18.564417 = 10.3736...; MR_p = 9.629 / 18.564417 = 0.5186...
    metrics = scope_metrics(equity, (hype,), snapshot.markets)
    assert metrics.notional == Decimal("192.58")
    assert metrics.maintenance == Decimal("9.629")
    assert metrics.leverage == Decimal("192.58") / Decimal("18.564417")
    assert round(metrics.leverage, 4) == Decimal("10.3736")
    assert metrics.margin_ratio == Decimal("9.629") / Decimal("18.564417")
    # The same numbers give Hyperliquid's liquidation price: at price P the equity is
    # 211.144417 - 4P and the maintenance 0.05 * 4P, equal at P = 211.144417 / 4.2.
    assert round(Decimal("211.144417") / Decimal("4.2"), 10) == hype.liquidation_price


async def test_snapshot_when_reads_then_perp_and_spot_clearinghouses_of_the_wallet(
    venue: LoopbackVenue,
) -> None:
    serve_hyperliquid(venue)
    async with hyperliquid_adapter(venue) as exchange:
        await exchange.fetch_snapshot()

    # Both reads name the wallet, like ccxt's own request fixtures (fetchBalance and
    # fetch spot balance); no signed action is sent to read an account.
    assert (
        info_calls(venue, "clearinghouseState")
        == [{"type": "clearinghouseState", "user": WALLET}] * 2
    )
    assert info_calls(venue, "spotClearinghouseState") == [
        {"type": "spotClearinghouseState", "user": WALLET}
    ]
    assert venue.calls("/exchange") == []


async def test_snapshot_when_account_is_unified_then_refused_naming_the_mode(
    venue: LoopbackVenue,
) -> None:
    serve_hyperliquid(venue, abstraction="unifiedAccount")
    async with hyperliquid_adapter(venue) as exchange:
        with pytest.raises(CapabilityMissing, match="unifiedAccount"):
            await exchange.fetch_snapshot()

    assert info_calls(venue, "clearinghouseState") == []


# -- maintenance margin from the margin tables --------------------------------------------


async def test_tiers_when_meta_lists_a_tiered_table_then_rates_are_half_initial_margin(
    venue: LoopbackVenue,
) -> None:
    serve_hyperliquid(venue)
    async with hyperliquid_adapter(venue, symbols=(DOGE, HYPE, "BTC/USDC:USDC")) as exchange:
        snapshot = await exchange.fetch_snapshot()

    # DOGE's table (Hyperliquid's docs example): 10x from 0, 5x from 20k, 3x from 100k.
    # MMR = 1 / (2 * maxLeverage): 1/20, 1/10, 1/6.
    assert snapshot.markets[DOGE].tiers == (
        MaintenanceTier(Decimal("0"), Decimal("0.05")),
        MaintenanceTier(Decimal("20000"), Decimal("0.1")),
        MaintenanceTier(Decimal("100000"), Decimal(1) / Decimal(6)),
    )
    # HYPE's table id 10 is not listed: flat at its maxLeverage 10, MMR 0.05.
    assert snapshot.markets[HYPE].tiers == (MaintenanceTier(Decimal("0"), Decimal("0.05")),)
    # BTC (published table 56): 40x, then 20x from 150M.
    assert [t.rate for t in snapshot.markets["BTC/USDC:USDC"].tiers] == [
        Decimal("0.0125"),
        Decimal("0.025"),
    ]
    # One meta read serves every symbol.
    assert len(info_calls(venue, "meta")) == 1

    tiers = snapshot.markets[DOGE].tiers
    # Hyperliquid: MM = n * MMR_i - deduction_i, deduction_0 = 0,
    # deduction_i = deduction_(i-1) + lowerBound_i * (MMR_i - MMR_(i-1)).
    # deduction_1 = 20000 * (0.1 - 0.05)                    = 1000
    # deduction_2 = 1000 + 100000 * (1/6 - 0.1)              = 7666.666...
    # n = 10,000:  10000 * 0.05                              = 500
    # n = 50,000:  50000 * 0.1 - 1000                        = 4000
    # n = 150,000: 150000 / 6 - 7666.666...                  = 17333.333...
    #   (tier by tier: 20000 * 0.05 + 80000 * 0.1 + 50000 / 6 = 1000 + 8000 + 8333.333...)
    assert maintenance_from_tiers(tiers, Decimal("10000")) == Decimal("500")
    assert maintenance_from_tiers(tiers, Decimal("50000")) == Decimal("4000")
    assert round(maintenance_from_tiers(tiers, Decimal("150000")), 6) == Decimal("17333.333333")
    # Continuous at a bound: 100000 * 0.1 - 1000 = 100000 / 6 - 7666.666... = 9000.
    assert round(maintenance_from_tiers(tiers, Decimal("100000")), 6) == Decimal("9000")


# -- environments and settings ------------------------------------------------------------


async def test_profile_when_testnet_then_sandbox_urls_and_testnet_signing() -> None:
    profile = profile_for("hyperliquid")
    exchange = quicken(profile.build(hyperliquid_settings(environment="testnet")))
    await exchange.close()

    assert exchange.urls["api"] == {
        "public": "https://api.hyperliquid-testnet.xyz",
        "private": "https://api.hyperliquid-testnet.xyz",
    }
    assert exchange.options["sandboxMode"] is True
    assert exchange.walletAddress == WALLET
    assert exchange.privateKey == TEST_CREDENTIALS["hyperliquid"]["private_key"]


async def test_profile_when_live_then_mainnet_urls() -> None:
    profile = profile_for("hyperliquid")
    exchange = quicken(profile.build(hyperliquid_settings(environment="live")))
    await exchange.close()

    assert exchange.implode_hostname(exchange.urls["api"]["private"]) == (
        "https://api.hyperliquid.xyz"
    )
    assert exchange.options["sandboxMode"] is False


def test_adapter_when_demo_then_refused_with_a_pointer_to_testnet() -> None:
    with pytest.raises(CapabilityMissing, match=r'paper on its testnet.*"testnet"'):
        CcxtExchange(hyperliquid_settings(environment="demo"))


def test_adapter_when_collateral_from_funding_then_refused() -> None:
    with pytest.raises(CapabilityMissing, match=r"has no funding wallet.*; use spot"):
        CcxtExchange(hyperliquid_settings(collateral_source="funding"))


def test_adapter_when_settle_is_not_usdc_then_refused() -> None:
    with pytest.raises(CapabilityMissing, match="settles in USDC"):
        CcxtExchange(hyperliquid_settings(settle="USDT"))
