"""How many HTTP requests a snapshot costs, and when markets are loaded again."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot.exchange.ccxt.market_catalog import MARKETS_MAX_AGE
from tests.integration.exchange.loopback import LoopbackVenue
from tests.integration.exchange.test_hyperliquid import hyperliquid_adapter, serve_hyperliquid
from tests.integration.exchange.venues import adapter_for, serve

# A steady cycle's snapshot (markets, tiers and account mode cached; the source wallet
# left unread: it is read only when a plan may draw on it). Binance's /fapi/v3/account
# carries every position's amount, notional, uPnL and margins: one request.
STEADY_STATE = {
    "binanceusdm": ["/fapi/v3/account"],
    "bybit": ["/v5/account/wallet-balance", "/v5/position/list"],
    "okx": ["/api/v5/account/balance", "/api/v5/account/positions"],
}
# The same with the source wallet read (a cycle whose plan may transfer).
WITH_SOURCE = {
    "binanceusdm": ["/fapi/v3/account", "/api/v3/account"],
    "bybit": [*STEADY_STATE["bybit"], "/v5/asset/transfer/query-account-coins-balance"],
    "okx": [*STEADY_STATE["okx"], "/api/v5/asset/balances"],
}
# The first snapshot also loads markets, tiers and how the account pools collateral
# (and, on Binance, positionRisk confirms the marks the account gave).
FIRST_SNAPSHOT_AT_MOST = {"binanceusdm": 6, "bybit": 9, "okx": 5}
MARKETS = {
    "binanceusdm": "/fapi/v1/exchangeInfo",
    "bybit": "/v5/market/instruments-info",
    "okx": "/api/v5/public/instruments",
}
TIERS = {"binanceusdm": "/fapi/v1/leverageBracket", "bybit": "/v5/market/risk-limit"}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 7, 28, 10, 6, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.parametrize("exchange_id", ["binanceusdm", "bybit", "okx"])
async def test_snapshot_when_markets_cached_and_source_unread_then_steady_requests_only(
    venue: LoopbackVenue, exchange_id: str
) -> None:
    serve(venue, exchange_id)
    async with adapter_for(exchange_id, venue) as exchange:
        await exchange.fetch_snapshot(include_source=False)
        first = len(venue.requests)
        venue.forget()
        snapshot = await exchange.fetch_snapshot(include_source=False)

    assert first <= FIRST_SNAPSHOT_AT_MOST[exchange_id]
    assert sorted(r.path for r in venue.requests) == sorted(STEADY_STATE[exchange_id])
    assert (snapshot.source_read, snapshot.source, snapshot.source_unknown) == (False, None, False)


@pytest.mark.parametrize("exchange_id", ["binanceusdm", "bybit", "okx"])
async def test_snapshot_when_source_wanted_then_one_request_more(
    venue: LoopbackVenue, exchange_id: str
) -> None:
    serve(venue, exchange_id)
    async with adapter_for(exchange_id, venue) as exchange:
        await exchange.fetch_snapshot()
        venue.forget()
        snapshot = await exchange.fetch_snapshot()
        full = sorted(r.path for r in venue.requests)
        venue.forget()
        completed = await exchange.fetch_source(replace(snapshot, source=None, source_read=False))

    assert full == sorted(WITH_SOURCE[exchange_id])
    assert snapshot.source_read and snapshot.source is not None
    # fetch_source reads the source wallet alone, and gives the same balance.
    assert [r.path for r in venue.requests] == [WITH_SOURCE[exchange_id][-1]]
    assert (completed.source, completed.source_read) == (snapshot.source, True)


async def test_snapshot_when_hyperliquid_steady_then_two_requests(venue: LoopbackVenue) -> None:
    serve_hyperliquid(venue)
    async with hyperliquid_adapter(venue) as exchange:
        await exchange.fetch_snapshot(include_source=False)
        venue.forget()
        await exchange.fetch_snapshot(include_source=False)
        steady = [call.json().get("type") for call in venue.requests]
        venue.forget()
        await exchange.fetch_snapshot()
        full = [call.json().get("type") for call in venue.requests]

    assert steady == ["clearinghouseState", "clearinghouseState"]
    assert sorted(full) == sorted([*steady, "spotClearinghouseState"])


@pytest.mark.parametrize("exchange_id", ["binanceusdm", "bybit"])
async def test_snapshot_when_a_day_passed_then_markets_and_tiers_reload_once(
    venue: LoopbackVenue, exchange_id: str
) -> None:
    serve(venue, exchange_id)
    clock = Clock()
    async with adapter_for(exchange_id, venue, clock=clock) as exchange:
        await exchange.fetch_snapshot()
        clock.now += MARKETS_MAX_AGE - timedelta(seconds=1)
        await exchange.fetch_snapshot()
        assert len(venue.calls(MARKETS[exchange_id])) in (1, 2)  # bybit: + pre-launch
        loaded = len(venue.calls(MARKETS[exchange_id]))

        clock.now += timedelta(seconds=2)
        await exchange.fetch_snapshot()
        await exchange.fetch_snapshot()

    assert len(venue.calls(MARKETS[exchange_id])) == 2 * loaded
    assert len(venue.calls(TIERS[exchange_id])) == 2


async def test_snapshot_when_market_reload_fails_then_yesterdays_markets_serve(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "okx")
    clock = Clock()
    async with adapter_for("okx", venue, clock=clock) as exchange:
        await exchange.fetch_snapshot()
        venue.reply("GET", MARKETS["okx"], "<html>503</html>", 503)
        clock.now += MARKETS_MAX_AGE
        snapshot = await exchange.fetch_snapshot()

    assert snapshot.markets["LTC/USDT:USDT"].contract_size > 0
    assert snapshot.taken_at == clock.now


async def test_snapshot_when_binance_steady_then_account_alone_gives_what_positionrisk_gave(
    venue: LoopbackVenue,
) -> None:
    # The first snapshot is built from positionRisk (its marks confirm the account's);
    # the next from /fapi/v3/account alone: mark = |notional| / |amount| = 607.55548506 /
    # 0.009, entry = (|notional| - uPnL) / amount = 67445.9, liquidation from the tiers.
    serve(venue, "binanceusdm")
    async with adapter_for("binanceusdm", venue) as exchange:
        confirmed = await exchange.fetch_snapshot(include_source=False)
        venue.forget()
        steady = await exchange.fetch_snapshot(include_source=False)

    assert [r.path for r in venue.requests] == ["/fapi/v3/account"]
    (venue_view,), (account_view,) = confirmed.positions, steady.positions
    assert account_view.mark_price == Decimal("67506.16500667")
    assert account_view.entry_price == Decimal("67445.9") == venue_view.entry_price
    assert (account_view.side, account_view.contracts) == (venue_view.side, venue_view.contracts)
    assert account_view.maintenance_margin == Decimal("2.43022194")
    # Binance's own 64846.98753790; (25.7261006 - 0.009 * 67445.9) / (0.009 * 0.004 - 0.009)
    assert venue_view.liquidation_price == Decimal("64846.98753790")
    assert account_view.liquidation_price is not None
    assert abs(account_view.liquidation_price / venue_view.liquidation_price - 1) < Decimal("1e-5")
    assert steady.derivatives == confirmed.derivatives
    assert steady.pooled_equity == confirmed.pooled_equity
