"""How many HTTP requests a snapshot costs, and when markets are loaded again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.exchange.ccxt.market_catalog import MARKETS_MAX_AGE
from tests.integration.exchange.loopback import LoopbackVenue
from tests.integration.exchange.venues import adapter_for, serve

# One steady-state snapshot (markets, tiers and account mode cached): derivatives
# balance, positions, source wallet. None of the three venues has a call for two of them.
STEADY_STATE = {
    "binanceusdm": ["/fapi/v3/account", "/fapi/v3/positionRisk", "/api/v3/account"],
    "bybit": [
        "/v5/account/wallet-balance",
        "/v5/position/list",
        "/v5/asset/transfer/query-account-coins-balance",
    ],
    "okx": ["/api/v5/account/balance", "/api/v5/account/positions", "/api/v5/asset/balances"],
}
# The first snapshot also loads markets, tiers and how the account pools collateral.
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
async def test_snapshot_when_markets_cached_then_three_requests(
    venue: LoopbackVenue, exchange_id: str
) -> None:
    serve(venue, exchange_id)
    async with adapter_for(exchange_id, venue) as exchange:
        await exchange.fetch_snapshot()
        first = len(venue.requests)
        venue.forget()
        await exchange.fetch_snapshot()

    assert first <= FIRST_SNAPSHOT_AT_MOST[exchange_id]
    assert sorted(r.path for r in venue.requests) == sorted(STEADY_STATE[exchange_id])


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
