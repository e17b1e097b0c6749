"""The paper venue's HTTP face: Binance USDⓈ-M and spot routes over a VenueBook.

Every route names its endpoint (faults are drawn per endpoint), whether it is signed,
and whether it writes. A write is applied and recorded before its reply is garbled or
lost, as on a real venue whose reply dies on the way back.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aiohttp import web

from bot.domain.models import OrderSide, Side
from bot.exchange.paper_venue import binance_payloads as payloads
from bot.exchange.paper_venue.algo_orders import AlgoOrders
from bot.exchange.paper_venue.fault_replies import (
    error_reply,
    garbled_reply,
    hang_up,
    json_reply,
)
from bot.exchange.paper_venue.faults import FaultKind, FaultPlan
from bot.exchange.paper_venue.signing import Refusal, Signer, int_param, positive_param
from bot.exchange.paper_venue.stream import MarkPriceStreams
from bot.exchange.paper_venue.venue_book import VenueBook
from bot.exchange.port import InsufficientFunds, InvalidOrder, OrderRequest

logger = logging.getLogger(__name__)

Params = dict[str, str]
Action = Callable[[Params], Awaitable[Any]]

# Faults after which a write may or may not have been applied (Binance: "the execution
# status is UNKNOWN"): half of them are applied first.
_MAYBE_APPLIED = (
    FaultKind.TIMEOUT,
    FaultKind.SERVER_JSON,
    FaultKind.SERVER_HTML,
    FaultKind.UNKNOWN,
)
_REFUSED = (FaultKind.RATE_LIMIT, FaultKind.BANNED, FaultKind.TIMESTAMP)
_GARBLED = (FaultKind.TRUNCATED, FaultKind.EMPTY, FaultKind.MISSING)


@dataclass
class VenueOptions:
    hold_seconds: float = 12.0  # ccxt's default timeout is 10 s
    max_latency_seconds: float = 1.5


class PaperVenue:
    """The routes; `app()` builds the aiohttp application."""

    def __init__(
        self, book: VenueBook, faults: FaultPlan, signer: Signer, options: VenueOptions
    ) -> None:
        self.book = book
        self.faults = faults
        self.signer = signer
        self.options = options
        # The fault counts live in the record, so they survive a restart.
        self.faults.injected = book.record.faults
        self._lock = asyncio.Lock()
        self._algo = AlgoOrders(book, self._symbol, _order_refusal)

    def app(self) -> web.Application:
        app = web.Application()
        routes: list[tuple[str, str, str, bool, bool, Action]] = [
            # method, path, endpoint, signed, writes, action
            ("GET", "/fapi/v1/time", "time", False, False, self._time),
            ("GET", "/api/v3/time", "time", False, False, self._time),
            ("GET", "/fapi/v1/exchangeInfo", "markets", False, False, self._markets),
            ("GET", "/fapi/v1/multiAssetsMargin", "pooling", True, False, self._pooling),
            ("GET", "/fapi/v3/account", "account", True, False, self._account),
            ("GET", "/fapi/v2/account", "account", True, False, self._account),
            ("GET", "/fapi/v3/positionRisk", "positions", True, False, self._positions),
            ("GET", "/fapi/v2/positionRisk", "positions", True, False, self._positions),
            ("GET", "/fapi/v1/leverageBracket", "brackets", True, False, self._brackets),
            ("GET", "/fapi/v1/order", "order_query", True, False, self._query_order),
            ("POST", "/fapi/v1/order", "order", True, True, self._create_order),
            ("POST", "/fapi/v1/positionMargin", "margin", True, True, self._margin),
            ("GET", "/api/v3/account", "spot", True, False, self._spot),
            ("POST", "/sapi/v1/asset/transfer", "transfer", True, True, self._transfer),
            ("GET", "/sapi/v1/asset/transfer", "transfer_history", True, False, self._history),
            *self._algo.routes(),
        ]
        for method, path, endpoint, signed, writes, action in routes:
            app.router.add_route(method, path, self._handler(endpoint, signed, writes, action))
        app.router.add_get("/paper/record", self._record)
        app.router.add_post("/paper/faults", self._set_faults)
        MarkPriceStreams(self.book).register(app)  # the markPrice websocket (issue 10)
        return app

    # -- the request pipeline ---------------------------------------------------------

    def _handler(
        self, endpoint: str, signed: bool, writes: bool, action: Action
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.text()
            try:
                params = self._params(request, body, signed)
            except Refusal as refusal:
                return json_reply(refusal.body(), refusal.status)
            fault = self.faults.draw(endpoint)
            if fault is not None:
                logger.info("fault %s on %s %s", fault.value, request.method, request.path)
                self.book.save()
            return await self._answer(request, params, fault, writes, action)

        return handle

    def _params(self, request: web.Request, body: str, signed: bool) -> Params:
        if signed:
            return self.signer.verify(
                request.headers.get("X-MBX-APIKEY"),
                request.query_string,
                body,
                self.book.now_ms(),
            )
        return dict(request.query)

    async def _answer(
        self,
        request: web.Request,
        params: Params,
        fault: FaultKind | None,
        writes: bool,
        action: Action,
    ) -> web.StreamResponse:
        rng = self.faults.rng
        if fault is FaultKind.LATENCY:
            await asyncio.sleep(rng.uniform(0.05, self.options.max_latency_seconds))
            fault = None
        if fault in _REFUSED or (fault in _MAYBE_APPLIED and not (writes and rng.random() < 0.5)):
            # Refused before anything happened (reads never happen either way).
            if fault is FaultKind.TIMEOUT:
                return await hang_up(request, self.options.hold_seconds)
            assert fault is not None
            return error_reply(fault, rng, self.book.now_ms())
        try:
            async with self._lock:
                try:
                    result = await action(params)
                finally:
                    # Whatever request moved the replay records the stops it fired.
                    self.book.note_fired()
        except Refusal as refusal:
            return json_reply(refusal.body(), refusal.status)
        if fault is None:
            return json_reply(result)
        if fault is FaultKind.TIMEOUT:
            return await hang_up(request, self.options.hold_seconds)
        if fault in _MAYBE_APPLIED:
            return error_reply(fault, rng, self.book.now_ms())
        if fault in _GARBLED:
            return garbled_reply(fault, result, rng)
        # LOST: applied; the reply dies on the way (reset, or a proxy's 502).
        if rng.random() < 0.5:
            return await hang_up(request, 0.0)
        return error_reply(FaultKind.SERVER_HTML, rng, self.book.now_ms())

    # -- reads ------------------------------------------------------------------------

    async def _time(self, params: Params) -> Any:
        return payloads.server_time(self.book.now_ms())

    async def _markets(self, params: Params) -> Any:
        return payloads.exchange_info(self.book.markets, self.book.now_ms())

    async def _pooling(self, params: Params) -> Any:
        return payloads.multi_assets_margin()

    async def _account(self, params: Params) -> Any:
        return payloads.futures_account(await self.book.snapshot(), self.book.now_ms())

    async def _positions(self, params: Params) -> Any:
        rows = payloads.position_risk(await self.book.snapshot(), self.book.now_ms())
        wanted = params.get("symbol")
        return [row for row in rows if wanted is None or row["symbol"] == wanted]

    async def _brackets(self, params: Params) -> Any:
        return payloads.leverage_brackets(self.book.markets)

    async def _spot(self, params: Params) -> Any:
        snapshot = await self.book.snapshot()
        source = snapshot.source.total if snapshot.source is not None else Decimal(0)
        return payloads.spot_account(self.book.settle, source, self.book.now_ms())

    async def _query_order(self, params: Params) -> Any:
        symbol = self._symbol(params)
        client_id = params.get("origClientOrderId")
        number = int_param(params.get("orderId"))
        if not client_id and number is not None:
            # By orderId: how a triggered stop's market order (its actualOrderId) is found.
            by_number = await self.book.find_order_by_number(symbol, number)
            client_id = None if by_number is None else by_number[1]
            if client_id is None:
                raise Refusal(400, -2013, "Order does not exist.")
        if not client_id:
            raise Refusal(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent.")
        found = await self.book.find_order(symbol, client_id)
        if found is None:
            raise Refusal(400, -2013, "Order does not exist.")
        result, at_ms = found
        reduce_only, position_side = self.book.order_flags(client_id)
        return payloads.order(
            result,
            reduce_only=reduce_only,
            position_side=position_side,
            update_ms=at_ms,
            with_time=True,
        )

    async def _history(self, params: Params) -> Any:
        rows = self.book.transfer_history(
            params.get("type"), int_param(params.get("startTime")),
            int_param(params.get("endTime")),
        )  # fmt: skip
        size = min(100, int_param(params.get("size")) or 10)
        page = max(1, int_param(params.get("current")) or 1)
        return payloads.transfer_rows(rows[(page - 1) * size : page * size], len(rows))

    # -- writes -----------------------------------------------------------------------

    async def _create_order(self, params: Params) -> Any:
        symbol = self._symbol(params)
        if params.get("type") != "MARKET":
            raise Refusal(400, -1116, "Invalid orderType.")
        try:
            side = OrderSide(params.get("side", "").lower())
        except ValueError:
            raise Refusal(400, -1117, "Invalid side.") from None
        amount = positive_param(params.get("quantity"), "quantity")
        reduce_only = params.get("reduceOnly", "false").lower() == "true"
        leg_name = params.get("positionSide", "BOTH").upper()
        if leg_name in ("LONG", "SHORT"):
            leg = Side(leg_name.lower())
            reduce_only = side is leg.closing_order_side
        elif leg_name == "BOTH":
            opening = Side.LONG if side is OrderSide.BUY else Side.SHORT
            closing = Side.SHORT if side is OrderSide.BUY else Side.LONG
            leg = closing if reduce_only else opening
        else:
            raise Refusal(400, -4006, "Invalid position side.")
        request = OrderRequest(
            symbol=symbol,
            side=side,
            amount=amount,
            reduce_only=reduce_only,
            position_side=leg,
            client_order_id=params.get("newClientOrderId") or f"paper-{uuid.uuid4().hex[:20]}",
            hedged=leg_name != "BOTH",
        )
        try:
            result = await self.book.create_order(request, leg_name)
        except InsufficientFunds:
            raise Refusal(400, -2019, "Margin is insufficient.") from None
        except InvalidOrder as error:
            raise _order_refusal(str(error)) from None
        return payloads.order(
            result, reduce_only=reduce_only, position_side=leg_name, update_ms=self.book.now_ms()
        )

    async def _margin(self, params: Params) -> Any:
        symbol = self._symbol(params)
        amount = positive_param(params.get("amount"), "amount")
        add = params.get("type") == "1"
        leg_name = params.get("positionSide", "BOTH").upper()
        snapshot = await self.book.snapshot()
        legs = [p for p in snapshot.positions if p.symbol == symbol]
        if leg_name in ("LONG", "SHORT"):
            legs = [p for p in legs if p.side.value.upper() == leg_name]
        if not legs:
            raise Refusal(400, -4046, "No position to modify margin.")
        try:
            result = await self.book.adjust_margin(
                symbol, legs[0].side, amount, add, leg_name != "BOTH"
            )
        except (InvalidOrder, InsufficientFunds) as error:
            raise Refusal(400, -4051, f"Isolated balance insufficient. ({error})") from None
        self.book.save()
        return payloads.position_margin(result.amount, add)

    async def _transfer(self, params: Params) -> Any:
        kind = params.get("type")
        if kind not in payloads.TRANSFER_TYPES.values():
            raise Refusal(400, -1100, "Illegal characters found in parameter 'type'.")
        if params.get("asset") != self.book.settle:
            raise Refusal(400, -4001, "Invalid asset.")
        amount = positive_param(params.get("amount"), "amount")
        try:
            tran_id = await self.book.transfer(amount, kind == payloads.TRANSFER_TYPES[True])
        except InsufficientFunds:
            raise Refusal(400, -5013, "Asset transfer failed: insufficient balance") from None
        except InvalidOrder as error:
            raise Refusal(400, -1013, f"Invalid amount. ({error})") from None
        return payloads.transfer(tran_id)

    # -- the operator's side door (not Binance) -------------------------------------------

    async def _record(self, request: web.Request) -> web.Response:
        return json_reply({**self.book.record.as_json(), "spec": self.faults.spec})

    async def _set_faults(self, request: web.Request) -> web.Response:
        document = await request.json()
        spec = str(document.get("spec", ""))
        try:
            self.faults.replace(spec)
        except ValueError as error:
            return json_reply({"error": str(error)}, 400)
        logger.info("faults now %r", spec)
        return json_reply({"spec": spec})

    def _symbol(self, params: Params) -> str:
        by_id = payloads.symbols_of(list(self.book.markets))
        try:
            return by_id[params.get("symbol", "")]
        except KeyError:
            raise Refusal(400, -1121, "Invalid symbol.") from None


def _order_refusal(message: str) -> Refusal:
    if "reduce-only" in message:
        return Refusal(400, -2022, "ReduceOnly Order is rejected.")
    if "duplicate" in message:
        return Refusal(400, -4116, "ClientOrderId is duplicated.")
    if "notional" in message:
        return Refusal(400, -4164, "Order's notional must be no smaller than 100.")
    if "precision" in message:
        return Refusal(400, -1111, "Precision is over the maximum defined for this asset.")
    return Refusal(400, -1013, f"Invalid quantity. ({message})")


async def serve(venue: PaperVenue, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve until `stop` is set; the record is saved on the way out."""
    runner = web.AppRunner(venue.app(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        logger.info("paper exchange listening on http://%s:%d", host, port)
        await stop.wait()
    finally:
        venue.book.save()
        await runner.cleanup()
