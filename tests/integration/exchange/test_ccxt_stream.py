"""Mark prices through real ccxt.pro over loopback websockets (issue 10, the streaming
trigger): Binance USDⓈ-M against the paper venue's markPrice stream, Bybit against a
loopback speaking its v5 public tickers topic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal

import pytest
from aiohttp import web

from bot.clock import utc_now
from bot.exchange.ccxt import CcxtSettings
from bot.exchange.ccxt.stream import CcxtMarkStream, build_stream_exchange, websocket_base
from bot.exchange.paper_venue import FaultPlan, PaperVenue, Signer, VenueBook, VenueOptions
from bot.exchange.paper_venue.stream import MARK_STREAMS, MarkPriceStreams
from bot.exchange.streams import MarkTick, StreamDropped, StreamUnsupported
from tests.integration.exchange.loopback import LoopbackVenue
from tests.integration.exchange.paper_venue_support import KEYS, paper_settings
from tests.integration.exchange.test_hyperliquid import hyperliquid_settings, serve_hyperliquid
from tests.integration.exchange.venues import quicken, serve, settings_for
from tests.integration.exchange.ws_loopback import (
    WsLoopback,
    binance_mark,
    bybit_ticker,
    hyperliquid_asset_ctx,
)

BTC = "BTC/USDT:USDT"
LTC = "LTC/USDT:USDT"  # the market in the Bybit fixtures


@dataclass
class StreamingVenue:
    url: str
    streams: MarkPriceStreams


@asynccontextmanager
async def streaming_venue(push_seconds: float = 1.0) -> AsyncIterator[StreamingVenue]:
    """The paper venue (REST + markPrice websocket) on 127.0.0.1, as `levbot
    paper-exchange` serves it."""
    book = VenueBook(paper_settings(), utc_now, None)
    signer = Signer(KEYS["api_key"], KEYS["secret"])
    app = PaperVenue(book, FaultPlan("", 7), signer, VenueOptions()).app()
    app[MARK_STREAMS].push_seconds = push_seconds
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield StreamingVenue(f"http://127.0.0.1:{runner.addresses[0][1]}", app[MARK_STREAMS])
    finally:
        await runner.cleanup()


def binance_settings(url: str) -> CcxtSettings:
    return CcxtSettings(
        account="paper", exchange_id="binanceusdm", environment="live",
        credentials=KEYS, api_base_url=url, symbols=(BTC,),
    )  # fmt: skip


async def first_tick(stream: CcxtMarkStream, symbol: str, within: float = 5) -> MarkTick:
    async def read() -> MarkTick:
        async for tick in stream.watch([symbol]):
            return tick
        raise AssertionError("the stream ended")

    return await asyncio.wait_for(read(), within)


async def test_ccxt_stream_when_paper_venue_moves_the_mark_then_binanceusdm_yields_it_at_once() -> (
    None
):
    async with streaming_venue(push_seconds=30) as venue:
        stream = CcxtMarkStream(quicken(build_stream_exchange(binance_settings(venue.url))))
        try:
            ticks = stream.watch([BTC])
            first = await asyncio.wait_for(anext(ticks), 5)
            started = time.perf_counter()
            venue.streams.set_mark(BTC, Decimal("31234.5"))
            moved = await asyncio.wait_for(anext(ticks), 5)
            waited = time.perf_counter() - started
            await ticks.aclose()
        finally:
            await stream.close()
    assert first.symbol == BTC and first.mark > 0
    assert moved == MarkTick(BTC, Decimal("31234.5"), moved.at)
    # Pushed on the move, not at the next 30 s beat.
    assert waited < 1


async def test_ccxt_stream_when_operator_posts_a_mark_then_subscribers_get_it() -> None:
    async with streaming_venue(push_seconds=30) as venue:
        stream = CcxtMarkStream(quicken(build_stream_exchange(binance_settings(venue.url))))
        exchange = stream.exchange
        try:
            ticks = stream.watch([BTC])
            await asyncio.wait_for(anext(ticks), 5)
            reply = await exchange.fetch(
                f"{venue.url}/paper/mark", "POST", {"Content-Type": "application/json"},
                '{"symbol": "BTC/USDT:USDT", "mark": "29999.9"}',
            )  # fmt: skip
            moved = await asyncio.wait_for(anext(ticks), 5)
            await ticks.aclose()
        finally:
            await stream.close()
    assert reply == {"symbol": BTC, "mark": "29999.9"}
    assert moved.mark == Decimal("29999.9")


async def test_ccxt_stream_when_bybit_pushes_a_ticker_then_its_mark_is_yielded(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "bybit")
    ws = WsLoopback("bybit")
    await ws.start()
    stream = CcxtMarkStream(
        quicken(build_stream_exchange(settings_for("bybit", venue), ws_base_url=ws.url))
    )
    try:
        assert not stream.uses_mark_channel  # Bybit carries the mark in its ticker
        reading = asyncio.create_task(first_tick(stream, LTC))
        await asyncio.wait_for(ws.subscribed.wait(), 5)
        await ws.push(bybit_ticker("LTCUSDT", "71.25", 1_764_600_000_000))
        tick = await reading
    finally:
        await stream.close()
        await ws.close()
    assert ws.subscriptions[0]["args"] == ["tickers.LTCUSDT"]
    assert tick == MarkTick(LTC, Decimal("71.25"), tick.at)
    assert int(tick.at.timestamp() * 1000) == 1_764_600_000_000


async def test_ccxt_stream_when_hyperliquid_pushes_asset_contexts_then_each_symbol_is_watched(
    venue: LoopbackVenue,
) -> None:
    serve_hyperliquid(venue)
    ws = WsLoopback("hyperliquid")
    await ws.start()
    settings = hyperliquid_settings(venue)
    stream = CcxtMarkStream(quicken(build_stream_exchange(settings, ws_base_url=ws.url)))
    btc, eth = "BTC/USDC:USDC", "ETH/USDC:USDC"
    ticks: list[MarkTick] = []

    async def read() -> None:
        async for tick in stream.watch([btc, eth]):
            ticks.append(tick)
            if len(ticks) == 2:
                return

    try:
        reading = asyncio.create_task(read())
        await asyncio.wait_for(ws.subscribed.wait(), 5)
        await asyncio.sleep(0.05)  # both subscriptions sent
        await ws.push(hyperliquid_asset_ctx("ETH", "3012.5"))
        await ws.push(hyperliquid_asset_ctx("BTC", "61000.5"))
        await asyncio.wait_for(reading, 5)
    finally:
        await stream.close()
        await ws.close()
    # Its watch_tickers is the allMids feed (no mark): one activeAssetCtx per symbol.
    subscribed = sorted(s["subscription"]["coin"] for s in ws.subscriptions)
    assert subscribed == ["BTC", "ETH"]
    assert {(t.symbol, t.mark) for t in ticks} == {
        (btc, Decimal("61000.5")),
        (eth, Decimal("3012.5")),
    }


async def test_ccxt_stream_when_binance_loopback_pushes_then_subscription_names_mark_channel(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "binanceusdm")
    ws = WsLoopback("binanceusdm")
    await ws.start()
    settings = settings_for("binanceusdm", venue)
    stream = CcxtMarkStream(quicken(build_stream_exchange(settings, ws_base_url=ws.url)))
    try:
        await stream.exchange.load_markets()
        symbol = next(s for s in stream.exchange.markets if s.endswith(":USDT"))
        market_id = stream.exchange.market(symbol)["id"]
        reading = asyncio.create_task(first_tick(stream, symbol))
        await asyncio.wait_for(ws.subscribed.wait(), 5)
        await ws.push(binance_mark(market_id, "123.45", 1_764_600_000_000))
        tick = await reading
    finally:
        await stream.close()
        await ws.close()
    assert ws.subscriptions[0]["params"] == [f"{market_id.lower()}@markPrice@1s"]
    assert tick.mark == Decimal("123.45")


async def test_ccxt_stream_when_the_server_hangs_up_then_stream_dropped() -> None:
    async with streaming_venue(push_seconds=30) as venue:
        stream = CcxtMarkStream(quicken(build_stream_exchange(binance_settings(venue.url))))
        try:
            ticks = stream.watch([BTC])
            await asyncio.wait_for(anext(ticks), 5)
            waiting = asyncio.create_task(anext(ticks))
            await asyncio.sleep(0.05)  # the stream is waiting for the next mark
            await venue.streams.hang_up()
            with pytest.raises(StreamDropped, match="closed"):
                await asyncio.wait_for(waiting, 5)
            # The same stream connects again on the next watch.
            again = await first_tick(stream, BTC)
        finally:
            await stream.close()
    assert again.mark > 0


async def test_ccxt_stream_when_no_mark_comes_for_stale_seconds_then_stream_dropped(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "bybit")
    ws = WsLoopback("bybit")
    await ws.start()
    exchange = quicken(build_stream_exchange(settings_for("bybit", venue), ws_base_url=ws.url))
    stream = CcxtMarkStream(exchange, stale_seconds=0.3)
    try:
        with pytest.raises(StreamDropped, match="no mark for"):
            await first_tick(stream, LTC)
    finally:
        await stream.close()
        await ws.close()
    assert ws.subscriptions  # connected and subscribed, then nothing came


async def test_ccxt_stream_when_symbol_is_unknown_then_stream_unsupported(
    venue: LoopbackVenue,
) -> None:
    serve(venue, "bybit")
    ws = WsLoopback("bybit")
    await ws.start()
    exchange = quicken(build_stream_exchange(settings_for("bybit", venue), ws_base_url=ws.url))
    stream = CcxtMarkStream(exchange)
    try:
        with pytest.raises(StreamUnsupported, match="BadSymbol"):
            await first_tick(stream, "DOGE/USDT:USDT")
    finally:
        await stream.close()
        await ws.close()


def test_build_stream_exchange_when_api_base_url_then_websockets_go_to_the_same_host() -> None:
    settings = binance_settings("http://127.0.0.1:8765")
    exchange = build_stream_exchange(settings)
    linear = exchange.urls["api"]["ws"]["linear"]
    assert linear == "ws://127.0.0.1:8765/ws"
    assert exchange.urls["api"]["fapiPublic"] == "http://127.0.0.1:8765/fapi/v1"
    # Marks are public: the stream instance never holds the account's keys.
    assert not exchange.apiKey and not exchange.secret
    assert websocket_base("https://proxy.example:9443/x") == "wss://proxy.example:9443"


def test_build_stream_exchange_when_demo_then_binance_demo_websockets() -> None:
    settings = CcxtSettings(account="d", exchange_id="binanceusdm", environment="demo")
    exchange = build_stream_exchange(settings)
    assert exchange.urls["api"]["ws"]["linear"] == "wss://fstream.binancefuture.com/ws"
