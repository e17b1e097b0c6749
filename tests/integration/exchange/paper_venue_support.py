"""A paper venue served on 127.0.0.1 inside the test's event loop, and real ccxt on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.clock import utc_now
from bot.domain.models import MarginMode, Side
from bot.exchange.ccxt import CcxtExchange, CcxtSettings, profile_for
from bot.exchange.paper_venue import FaultPlan, PaperVenue, Signer, VenueBook, VenueOptions
from bot.exchange.sim.paper import BUILTIN_FEED, PaperSettings
from tests.integration.exchange.venues import FAST_RETRY, TEST_CREDENTIALS, quicken

KEYS = TEST_CREDENTIALS["binanceusdm"]


def paper_settings(bar_seconds: float = 3600.0) -> PaperSettings:
    # One candle an hour of wall time: the mark holds still during a test.
    return PaperSettings(
        account="paper-venue", symbol="BTC/USDT:USDT", side=Side.LONG,
        equity=Decimal(10000), reserve=Decimal(5000), leverage=Decimal(4),
        margin_mode=MarginMode.CROSS, bar_seconds=bar_seconds, fee=Decimal("0.0005"),
        slippage=Decimal("0.0005"), loop=False, feed=BUILTIN_FEED, state_file=None,
    )  # fmt: skip


@dataclass
class RunningVenue:
    venue: PaperVenue
    url: str

    @property
    def book(self) -> VenueBook:
        return self.venue.book


@asynccontextmanager
async def running_venue(
    state: Path | None,
    faults: str = "",
    seed: int = 7,
    clock: Callable[[], datetime] = utc_now,
    **options: Any,
) -> AsyncIterator[RunningVenue]:
    # `clock`: a test that moves the mark moves the venue's clock a bar ahead.
    book = VenueBook(paper_settings(), clock, state)
    venue = PaperVenue(
        book,
        FaultPlan(faults, seed),
        Signer(KEYS["api_key"], KEYS["secret"]),
        VenueOptions(**options),
    )
    runner = web.AppRunner(venue.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield RunningVenue(venue, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


def adapter_on(url: str, **overrides: Any) -> CcxtExchange:
    """The bot's own adapter, built by the Binance profile as in production."""
    settings = CcxtSettings(
        account="paper", exchange_id="binanceusdm", environment="live",
        credentials=overrides.pop("credentials", KEYS), api_base_url=url,
        symbols=("BTC/USDT:USDT",),
    )  # fmt: skip
    profile = profile_for("binanceusdm")
    exchange = quicken(profile.build(settings))
    source = quicken(profile.build_source(settings))
    return CcxtExchange(
        settings, profile, exchange=exchange, source_exchange=source, retry=FAST_RETRY
    )


def now() -> datetime:
    return datetime.now(UTC)
