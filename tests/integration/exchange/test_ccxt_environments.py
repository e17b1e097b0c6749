"""live / testnet / demo per venue (DESIGN.md §7), URL rebasing, and settings hygiene."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from bot.exchange.ccxt import CcxtExchange, CcxtSettings, profile_for
from bot.exchange.ccxt.settings import Environment
from bot.exchange.ccxt.urls import rebase_urls
from bot.exchange.port import CapabilityMissing
from tests.integration.exchange.loopback import LoopbackVenue
from tests.integration.exchange.venues import (
    CLIENT_ID,
    adapter_for,
    quicken,
    recorded_loopback,
    serve,
    settings_for,
)


async def built(exchange_id: str, environment: Environment) -> tuple[Any, Any]:
    """The ccxt instances a profile builds (closed again: only their URLs are read)."""
    settings = settings_for(exchange_id, environment=environment)
    profile = profile_for(exchange_id)
    exchange, source = profile.build(settings), profile.build_source(settings)
    for instance in (exchange, source):
        if instance is not None:
            await quicken(instance).close()
    return exchange, source


def test_adapter_when_binanceusdm_testnet_then_refused_with_a_pointer_to_demo() -> None:
    with pytest.raises(CapabilityMissing, match=r'deprecates the Binance futures testnet.*"demo"'):
        CcxtExchange(settings_for("binanceusdm", environment="testnet"))


async def test_profile_when_binanceusdm_demo_then_both_instances_use_demo_hosts() -> None:
    exchange, spot = await built("binanceusdm", "demo")

    assert exchange.urls["api"]["fapiPrivate"] == "https://demo-fapi.binance.com/fapi/v1"
    assert exchange.urls["api"]["fapiPrivateV3"] == "https://demo-fapi.binance.com/fapi/v3"
    assert spot.urls["api"]["private"] == "https://demo-api.binance.com/api/v3"
    assert exchange.options["fetchCurrencies"] is False
    assert exchange.options["fetchMargins"] is False


async def test_profile_when_binanceusdm_live_then_production_hosts() -> None:
    exchange, spot = await built("binanceusdm", "live")

    assert exchange.urls["api"]["fapiPrivate"] == "https://fapi.binance.com/fapi/v1"
    assert spot.urls["api"]["private"] == "https://api.binance.com/api/v3"


@pytest.mark.parametrize(
    ("environment", "host"),
    [("live", "https://api.{hostname}"), ("testnet", "https://api-testnet.{hostname}"),
     ("demo", "https://api-demo.{hostname}")],
)  # fmt: skip
async def test_profile_when_bybit_environment_then_matching_host(
    environment: Environment, host: str
) -> None:
    exchange, source = await built("bybit", environment)

    assert exchange.urls["api"]["private"] == host
    assert source is None


async def test_profile_when_okx_demo_then_simulated_trading_header() -> None:
    exchange, _ = await built("okx", "demo")

    assert exchange.headers["x-simulated-trading"] == "1"


def test_adapter_when_okx_testnet_then_refused_with_a_pointer_to_demo() -> None:
    with pytest.raises(CapabilityMissing, match=r'sandbox is its demo trading.*"demo"'):
        CcxtExchange(settings_for("okx", environment="testnet"))


async def test_snapshot_when_okx_demo_then_requests_carry_simulated_trading(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "okx")
    async with adapter_for("okx", venue, environment="demo") as exchange:
        await exchange.fetch_snapshot()

    private = [r for r in venue.requests if r.path.startswith("/api/v5/account/")]
    assert private
    assert all(r.headers.get("x-simulated-trading") == "1" for r in private)


async def test_snapshot_when_binanceusdm_demo_on_loopback_then_same_paths_answer(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    async with adapter_for("binanceusdm", venue, environment="demo") as exchange:
        snapshot = await exchange.fetch_snapshot()

    assert len(snapshot.positions) == 1
    assert venue.unmatched == []


async def test_snapshot_when_binanceusdm_demo_with_funding_source_then_no_source_wallet(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    async with adapter_for(
        "binanceusdm", venue, environment="demo", collateral_source="funding"
    ) as exchange:
        snapshot = await exchange.fetch_snapshot()

    # Demo trading has no /sapi: the planner gets no source wallet, not a failed cycle.
    assert snapshot.source is None
    assert len(snapshot.positions) == 1
    assert not [r for r in venue.requests if r.path.startswith("/sapi/")]


async def test_transfer_when_binanceusdm_demo_then_capability_missing(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    async with adapter_for("binanceusdm", venue, environment="demo") as exchange:
        with pytest.raises(CapabilityMissing, match="sapi"):
            await exchange.transfer("USDT", Decimal("1"), True, CLIENT_ID)

    assert venue.calls("/sapi/v1/asset/transfer") == []


def test_rebase_urls_when_nested_with_placeholders_then_paths_kept() -> None:
    urls = {
        "fapiPrivate": "https://fapi.binance.com/fapi/v1",
        "rest": "https://{hostname}",
        "nested": {"private": "https://api-testnet.{hostname}/v5"},
        "not-a-url": 42,
    }
    assert rebase_urls(urls, "http://127.0.0.1:8080") == {
        "fapiPrivate": "http://127.0.0.1:8080/fapi/v1",
        "rest": "http://127.0.0.1:8080",
        "nested": {"private": "http://127.0.0.1:8080/v5"},
        "not-a-url": 42,
    }


def test_settings_when_repr_then_no_credentials() -> None:
    settings = settings_for("okx")
    text = repr(settings)
    assert settings.secrets and all(secret not in text for secret in settings.secrets)
    assert "okx" in text


def test_settings_when_base_url_is_not_http_then_value_error() -> None:
    with pytest.raises(ValueError, match="api_base_url"):
        CcxtSettings(account="a", exchange_id="okx", environment="demo", api_base_url="ftp://x")


def test_adapter_when_bybit_source_is_spot_then_refused() -> None:
    with pytest.raises(CapabilityMissing, match="funding"):
        CcxtExchange(settings_for("bybit", collateral_source="spot"))


async def test_snapshot_when_okx_demo_knows_usdt_only_from_markets_then_places_follow(
    venue: LoopbackVenue,
) -> None:
    # OKX's sandbox has no currency list: ccxt derives USDT's precision from a market's
    # price tick (0.1 here) and would round a 12.34 transfer to 12.3.
    serve(venue, "okx")
    instruments = recorded_loopback("okx", "GET /api/v5/public/instruments")
    btc_only = [i for i in instruments["data"] if i["instId"] == "BTC-USDT-SWAP"]
    venue.reply("GET", "/api/v5/public/instruments", {**instruments, "data": btc_only})
    venue.reply("GET", "/api/v5/account/positions", {"code": "0", "data": [], "msg": ""})
    async with adapter_for("okx", venue, environment="demo") as exchange:
        snapshot = await exchange.fetch_snapshot()
        await exchange.transfer("USDT", Decimal("12.3"), True, CLIENT_ID)

    assert snapshot.transfer_places == 1
    assert venue.calls("/api/v5/asset/transfer")[0].json()["amt"] == "12.3"
    assert venue.calls("/api/v5/asset/currencies") == []


def test_adapter_when_hedged_on_a_venue_without_hedge_mode_then_refused() -> None:
    settings = settings_for("hyperliquid", collateral_source="spot", hedged=True)
    with pytest.raises(CapabilityMissing, match="no hedge mode"):
        CcxtExchange(settings)
