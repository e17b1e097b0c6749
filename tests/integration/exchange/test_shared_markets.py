"""Markets and tiers are loaded once per venue and environment and shared by every account
on it (issue 12 §3); what belongs to an account stays its own. Real ccxt over loopback."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.exchange.ccxt import CcxtExchange, profile_for
from bot.exchange.ccxt.settings import Environment
from bot.exchange.ccxt.shared_markets import MARKETS_MAX_AGE, MarketRegistry
from tests.integration.exchange.loopback import LoopbackVenue, RecordedRequest, Reply
from tests.integration.exchange.venues import (
    FAST_RETRY,
    FIXTURES,
    quicken,
    recorded_loopback,
    serve,
    settings_for,
)

MARKETS = "/fapi/v1/exchangeInfo"
TIERS = "/fapi/v1/leverageBracket"
# Binance's USDⓈ-M list of 2025-07-04 (442 perpetuals); the served fixture lists two.
FULL_MARKETS = FIXTURES / "binanceusdm_full_markets.json.gz"
LISTED_LATER = "SOL/USDT:USDT"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 7, 4, 16, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Account:
    """One Binance account as the daemon builds it, with its ccxt instance in view."""

    def __init__(self, adapter: CcxtExchange, ccxt_instance: Any) -> None:
        self.adapter = adapter
        self.ccxt = ccxt_instance


AccountFactory = Callable[..., Account]


@pytest.fixture
async def accounts(venue: LoopbackVenue) -> AsyncIterator[AccountFactory]:
    """Builds accounts on `venue` with the given registry; closes them afterwards."""
    serve(venue, "binanceusdm")
    built: list[Account] = []

    def build(
        name: str,
        registry: MarketRegistry,
        *,
        environment: Environment = "live",
        clock: Clock | None = None,
    ) -> Account:
        settings = replace(
            settings_for("binanceusdm", venue, environment=environment),
            account=name,
            credentials={"api_key": f"key-{name}", "secret": f"secret-{name}"},
        )
        profile = profile_for("binanceusdm")
        instance = quicken(profile.build(settings))
        source = quicken(profile.build_source(settings))
        extra: dict[str, Any] = {} if clock is None else {"clock": clock}
        adapter = CcxtExchange(
            settings,
            profile,
            exchange=instance,
            source_exchange=source,
            retry=FAST_RETRY,
            markets=registry,
            **extra,
        )
        account = Account(adapter, instance)
        built.append(account)
        return account

    try:
        yield build
    finally:
        await asyncio.gather(*(account.adapter.close() for account in built))


def full_markets() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(gzip.decompress(FULL_MARKETS.read_bytes()))
    return loaded


async def test_accounts_when_same_venue_and_environment_then_one_markets_request_and_one_dict(
    venue: LoopbackVenue, accounts: AccountFactory
) -> None:
    registry = MarketRegistry()
    first, second = accounts("first", registry), accounts("second", registry)

    await asyncio.gather(first.adapter.fetch_snapshot(), second.adapter.fetch_snapshot())

    assert len(venue.calls(MARKETS)) == 1
    assert first.ccxt.markets is second.ccxt.markets
    assert first.ccxt.markets_by_id is second.ccxt.markets_by_id
    assert first.ccxt.currencies is second.ccxt.currencies
    assert "BTC/USDT:USDT" in second.ccxt.markets


async def test_accounts_when_same_venue_then_tier_tables_loaded_once_and_shared(
    venue: LoopbackVenue, accounts: AccountFactory
) -> None:
    registry = MarketRegistry()
    first, second = accounts("first", registry), accounts("second", registry)

    await asyncio.gather(first.adapter.fetch_snapshot(), second.adapter.fetch_snapshot())
    one, two = await asyncio.gather(first.adapter.fetch_snapshot(), second.adapter.fetch_snapshot())

    # Not once per instance either: ccxt's own Binance position parser reads them too.
    assert len(venue.calls(TIERS)) == 1
    assert one.markets["BTC/USDT:USDT"].tiers
    assert one.markets["BTC/USDT:USDT"].tiers == two.markets["BTC/USDT:USDT"].tiers
    # ccxt's own position parsing reads the brackets from the instance's options.
    assert first.ccxt.options["leverageBrackets"] is second.ccxt.options["leverageBrackets"]


async def test_accounts_when_demo_and_live_then_markets_not_shared(
    venue: LoopbackVenue, accounts: AccountFactory
) -> None:
    registry = MarketRegistry()
    live = accounts("live", registry)
    demo = accounts("demo", registry, environment="demo")

    await live.adapter.fetch_snapshot()
    await demo.adapter.fetch_snapshot()

    assert len(venue.calls(MARKETS)) == 2
    assert live.ccxt.markets is not demo.ccxt.markets


async def test_accounts_when_no_registry_shared_then_each_loads_its_own(
    venue: LoopbackVenue, accounts: AccountFactory
) -> None:
    first, second = accounts("first", MarketRegistry()), accounts("second", MarketRegistry())

    await first.adapter.fetch_snapshot()
    await second.adapter.fetch_snapshot()

    assert len(venue.calls(MARKETS)) == 2
    assert first.ccxt.markets is not second.ccxt.markets


async def test_daily_reload_when_a_day_passed_then_one_request_and_every_account_sees_new_markets(
    venue: LoopbackVenue, accounts: AccountFactory
) -> None:
    registry, clock = MarketRegistry(), Clock()
    first = accounts("first", registry, clock=clock)
    second = accounts("second", registry, clock=clock)
    await asyncio.gather(first.adapter.fetch_snapshot(), second.adapter.fetch_snapshot())
    assert LISTED_LATER not in second.ccxt.markets
    full = full_markets()
    venue.reply("GET", MARKETS, full["exchangeInfo"])
    venue.reply("GET", TIERS, full["leverageBracket"])
    venue.forget()

    clock.now += MARKETS_MAX_AGE
    await asyncio.gather(first.adapter.fetch_snapshot(), second.adapter.fetch_snapshot())
    await first.adapter.fetch_snapshot()

    assert len(venue.calls(MARKETS)) == 1
    assert len(venue.calls(TIERS)) == 1
    assert LISTED_LATER in first.ccxt.markets
    assert second.ccxt.markets is first.ccxt.markets
    assert len(second.ccxt.markets) == len(full["exchangeInfo"]["symbols"])


async def test_daily_reload_when_it_fails_then_every_account_keeps_yesterdays_markets(
    venue: LoopbackVenue, accounts: AccountFactory
) -> None:
    registry, clock = MarketRegistry(), Clock()
    first = accounts("first", registry, clock=clock)
    second = accounts("second", registry, clock=clock)
    await asyncio.gather(first.adapter.fetch_snapshot(), second.adapter.fetch_snapshot())
    venue.reply("GET", MARKETS, "<html>503</html>", 503)
    venue.forget()

    clock.now += MARKETS_MAX_AGE
    one, two = await asyncio.gather(first.adapter.fetch_snapshot(), second.adapter.fetch_snapshot())

    # The failed reload is not tried again by every account (its retries aside).
    assert len(venue.calls(MARKETS)) <= FAST_RETRY.attempts
    assert one.markets["BTC/USDT:USDT"].amount_step == two.markets["BTC/USDT:USDT"].amount_step
    assert two.taken_at == clock.now


async def test_accounts_when_sharing_markets_then_own_keys_and_own_collateral_mode(
    venue: LoopbackVenue, accounts: AccountFactory
) -> None:
    registry = MarketRegistry()

    def pooling(request: RecordedRequest) -> Reply:
        # Only the first account has multi-assets mode on.
        return Reply(200, {"multiAssetsMargin": request.headers["X-MBX-APIKEY"] == "key-first"})

    venue.respond("GET", "/fapi/v1/multiAssetsMargin", pooling)
    first, second = accounts("first", registry), accounts("second", registry)

    one, two = await asyncio.gather(first.adapter.fetch_snapshot(), second.adapter.fetch_snapshot())

    assert one.pooled_equity is not None
    assert two.pooled_equity is None
    account_keys = sorted(r.headers["X-MBX-APIKEY"] for r in venue.calls("/fapi/v3/account"))
    assert account_keys == ["key-first", "key-second"]
    assert first.ccxt.options is not second.ccxt.options
    assert first.ccxt.apiKey != second.ccxt.apiKey


async def test_accounts_when_markets_shared_then_first_load_failure_fails_each_waiting_account(
    venue: LoopbackVenue, accounts: AccountFactory
) -> None:
    registry = MarketRegistry()
    venue.reply("GET", MARKETS, "<html>503</html>", 503)
    first, second = accounts("first", registry), accounts("second", registry)

    results = await asyncio.gather(
        first.adapter.fetch_snapshot(), second.adapter.fetch_snapshot(), return_exceptions=True
    )

    assert all(isinstance(result, Exception) for result in results)
    venue.reply("GET", MARKETS, recorded_loopback("binanceusdm", f"GET {MARKETS}"))
    snapshot = await second.adapter.fetch_snapshot()
    assert "BTC/USDT:USDT" in snapshot.markets
