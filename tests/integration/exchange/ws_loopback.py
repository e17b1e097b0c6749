"""A websocket server on 127.0.0.1 speaking a venue's public stream format, for ccxt.pro.

Point a ccxt.pro instance at it with `build_stream_exchange(..., ws_base_url=url)`:
every websocket URL keeps its path and gets this host. It answers subscriptions the
way the venue does, records them, pushes what the test tells it to, and can hang up
(a venue restarting its stream servers) or go silent (a dead connection).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import WSMsgType, web

Venue = Literal["binanceusdm", "bybit", "hyperliquid"]


@dataclass
class WsLoopback:
    venue: Venue
    subscriptions: list[Any] = field(default_factory=list)
    connections: int = 0
    # Silent: accept connections and subscriptions, never push.
    silent: bool = False
    _sockets: set[web.WebSocketResponse] = field(default_factory=set)
    _runner: web.AppRunner | None = None
    _url: str | None = None
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        assert self._url is not None, "start() first"
        return self._url

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._url = f"ws://127.0.0.1:{self._runner.addresses[0][1]}"

    async def close(self) -> None:
        await self.hang_up()
        if self._runner is not None:
            await self._runner.cleanup()

    async def push(self, payload: Any) -> None:
        for socket in list(self._sockets):
            await socket.send_str(json.dumps(payload))

    async def hang_up(self) -> None:
        for socket in list(self._sockets):
            await socket.close()
        self.subscribed.clear()

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self.connections += 1
        self._sockets.add(socket)
        try:
            async for message in socket:
                if message.type is WSMsgType.TEXT:
                    await self._answer(socket, json.loads(message.data))
        finally:
            self._sockets.discard(socket)
        return socket

    async def _answer(self, socket: web.WebSocketResponse, command: dict[str, Any]) -> None:
        if self.venue == "binanceusdm":
            if command.get("method") == "SUBSCRIBE":
                self.subscriptions.append(command)
                await socket.send_str(json.dumps({"result": None, "id": command.get("id")}))
                self.subscribed.set()
            return
        if self.venue == "hyperliquid":
            method = command.get("method")
            if method == "ping":
                await socket.send_str(json.dumps({"channel": "pong"}))
            elif method == "subscribe":
                self.subscriptions.append(command)
                reply = {"channel": "subscriptionResponse", "data": command}
                await socket.send_str(json.dumps(reply))
                self.subscribed.set()
            return
        op = command.get("op")
        if op == "ping":
            reply = {"success": True, "ret_msg": "pong", "conn_id": "c1", "op": "ping"}
            await socket.send_str(json.dumps(reply))
        elif op == "subscribe":
            self.subscriptions.append(command)
            reply = {
                "success": True, "ret_msg": "", "conn_id": "c1",
                "req_id": command.get("req_id"), "op": "subscribe",
            }  # fmt: skip
            await socket.send_str(json.dumps(reply))
            self.subscribed.set()


def binance_mark(market_id: str, mark: str, at_ms: int) -> dict[str, Any]:
    """One event of Binance USDⓈ-M's <symbol>@markPrice@1s stream."""
    return {
        "e": "markPriceUpdate", "E": at_ms, "s": market_id, "p": mark, "i": mark,
        "P": mark, "r": "0.00010000", "T": at_ms + 3_600_000,
    }  # fmt: skip


def bybit_ticker(market_id: str, mark: str, at_ms: int) -> dict[str, Any]:
    """One snapshot of Bybit v5's public linear tickers.<symbol> topic."""
    return {
        "topic": f"tickers.{market_id}",
        "type": "snapshot",
        "data": {
            "symbol": market_id,
            "tickDirection": "PlusTick",
            "price24hPcnt": "0.01",
            "lastPrice": mark,
            "prevPrice24h": mark,
            "highPrice24h": mark,
            "lowPrice24h": mark,
            "prevPrice1h": mark,
            "markPrice": mark,
            "indexPrice": mark,
            "openInterest": "100",
            "openInterestValue": "1000000",
            "turnover24h": "1",
            "volume24h": "1",
            "nextFundingTime": str(at_ms + 3_600_000),
            "fundingRate": "0.0001",
            "bid1Price": mark,
            "bid1Size": "1",
            "ask1Price": mark,
            "ask1Size": "1",
        },
        "cs": 1,
        "ts": at_ms,
    }


def hyperliquid_asset_ctx(coin: str, mark: str) -> dict[str, Any]:
    """One message of Hyperliquid's activeAssetCtx subscription (a perp)."""
    return {
        "channel": "activeAssetCtx",
        "data": {
            "coin": coin,
            "ctx": {
                "funding": "0.0000125",
                "openInterest": "1000",
                "prevDayPx": mark,
                "dayNtlVlm": "1000000",
                "premium": "0.0001",
                "oraclePx": mark,
                "markPx": mark,
                "midPx": mark,
                "impactPxs": [mark, mark],
                "dayBaseVlm": "10",
            },
        },
    }
