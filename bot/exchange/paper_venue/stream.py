"""The paper venue's mark-price websocket, in Binance USDⓈ-M's markPrice stream format.

ccxt.pro binanceusdm, pointed at the venue (`api_base_url`), connects to
`/market/ws/<n>` and sends `{"method": "SUBSCRIBE", "params": ["btcusdt@markPrice@1s"],
"id": 1}`; the venue answers `{"result": null, "id": 1}` and then pushes
`markPriceUpdate` events every `push_seconds` (Binance's @1s cadence by default) and at
once whenever the operator moves a mark (POST /paper/mark, not Binance).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import WSMsgType, web

from bot.exchange.paper_venue.binance_payloads import market_id
from bot.exchange.paper_venue.venue_book import VenueBook

logger = logging.getLogger(__name__)

# Where ccxt.pro's binanceusdm connects (its /ws base, and the /market and /public
# categories it derives from it), each with a stream index.
PATHS = ("/ws", "/ws/{stream}", "/market/ws/{stream}", "/public/ws/{stream}")
FUNDING_EVERY_MS = 8 * 3600 * 1000


class MarkPriceStreams:
    """Every open markPrice connection of one venue."""

    def __init__(self, book: VenueBook, push_seconds: float = 1.0) -> None:
        self.book = book
        self.push_seconds = push_seconds
        self._wakers: set[asyncio.Event] = set()
        self._sockets: set[web.WebSocketResponse] = set()

    def register(self, app: web.Application) -> None:
        """Add the websocket routes and the operator's POST /paper/mark to `app`; the
        instance is `app[MARK_STREAMS]` for callers in the same process."""
        app[MARK_STREAMS] = self
        for path in PATHS:
            app.router.add_get(path, self._socket)
        app.router.add_post("/paper/mark", self._set_mark)

    @property
    def connections(self) -> int:
        return len(self._sockets)

    def set_mark(self, symbol: str, mark: Decimal) -> None:
        """Move the mark of `symbol` now and push it to every subscriber at once (the
        replay moves it again at its next bar)."""
        self.book.paper.sim.set_mark(symbol, mark)
        self.poke()

    def poke(self) -> None:
        for waker in self._wakers:
            waker.set()

    async def hang_up(self) -> None:
        """Close every connection, as a venue restarting its stream servers does."""
        for socket in list(self._sockets):
            await socket.close()

    async def _set_mark(self, request: web.Request) -> web.Response:
        document = await request.json()
        symbol = str(document.get("symbol", ""))
        try:
            mark = Decimal(str(document.get("mark", "")))
        except InvalidOperation:
            return web.json_response({"error": "mark must be a number"}, status=400)
        if symbol not in self.book.markets or not mark.is_finite() or mark <= 0:
            return web.json_response({"error": "unknown symbol or bad mark"}, status=400)
        self.set_mark(symbol, mark)
        return web.json_response({"symbol": symbol, "mark": str(mark)})

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        streams: set[str] = set()
        waker = asyncio.Event()
        self._wakers.add(waker)
        self._sockets.add(socket)
        pusher = asyncio.create_task(self._push(socket, streams, waker))
        try:
            async for message in socket:
                if message.type is not WSMsgType.TEXT:
                    continue
                await self._command(socket, message.data, streams)
                waker.set()
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher
            self._wakers.discard(waker)
            self._sockets.discard(socket)
        return socket

    async def _command(self, socket: web.WebSocketResponse, text: str, streams: set[str]) -> None:
        try:
            command = json.loads(text)
        except ValueError:
            return
        if not isinstance(command, dict):
            return
        method = command.get("method")
        params = [str(p) for p in command.get("params") or []]
        if method == "SUBSCRIBE":
            streams.update(params)
        elif method == "UNSUBSCRIBE":
            streams.difference_update(params)
        await socket.send_str(json.dumps({"result": None, "id": command.get("id")}))

    async def _push(
        self, socket: web.WebSocketResponse, streams: set[str], waker: asyncio.Event
    ) -> None:
        while not socket.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waker.wait(), timeout=self.push_seconds)
            waker.clear()
            if not streams or socket.closed:
                continue
            for payload in await self._updates(streams):
                with contextlib.suppress(ConnectionError):
                    await socket.send_str(json.dumps(payload))

    async def _updates(self, streams: set[str]) -> list[Any]:
        await self.book.snapshot()  # advances the replay to now
        now = self.book.now_ms()
        events = {market_id(s).lower(): self._event(s, now) for s in self.book.markets}
        out: list[Any] = []
        for stream in sorted(streams):
            name = stream.split("@", 1)[0]
            if name == "!markprice":
                out.append(list(events.values()))
            elif name in events:
                out.append(events[name])
        return out

    def _event(self, symbol: str, now_ms: int) -> dict[str, Any]:
        mark = str(self.book.paper.sim.mark(symbol))
        return {
            "e": "markPriceUpdate",
            "E": now_ms,
            "s": market_id(symbol),
            "p": mark,
            "i": mark,
            "P": mark,
            "r": "0.00010000",
            "T": (now_ms // FUNDING_EVERY_MS + 1) * FUNDING_EVERY_MS,
        }


MARK_STREAMS = web.AppKey("mark_streams", MarkPriceStreams)
