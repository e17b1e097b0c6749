"""The paper venue's algo-order routes: Binance USDⓈ-M conditional orders (STOP_MARKET on
the mark price, reduce-only), which ccxt 4.5 sends to /fapi/v1/algoOrder.

Only what a backstop needs: reduce-only STOP_MARKET orders. A stop rests in the account
and fires when the replay moves the mark past its trigger (the account's `trigger_stops`),
filling as a reduce-only market order that GET /fapi/v1/order finds by its
`actualOrderId`. The venue fires on its one price whatever `workingType` says; the
reply echoes what was asked.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bot.domain.models import OrderSide, Side
from bot.domain.stops import StopOrder, StopStatus
from bot.exchange.paper_venue import binance_payloads as payloads
from bot.exchange.paper_venue.signing import Refusal, int_param, positive_param
from bot.exchange.paper_venue.venue_book import VenueBook
from bot.exchange.port import InvalidOrder, StopRequest

Params = dict[str, str]
Action = Callable[[Params], Awaitable[Any]]
# method, path, endpoint (faults are drawn per endpoint), signed, writes, action
Route = tuple[str, str, str, bool, bool, Action]
WORKING_TYPES = ("MARK_PRICE", "CONTRACT_PRICE")


class AlgoOrders:
    """POST/GET/DELETE /fapi/v1/algoOrder and GET /fapi/v1/openAlgoOrders over a book."""

    def __init__(
        self,
        book: VenueBook,
        symbol_of: Callable[[Params], str],
        refusal_for: Callable[[str], Refusal],
    ) -> None:
        self.book = book
        self._symbol = symbol_of
        self._refusal_for = refusal_for

    def routes(self) -> list[Route]:
        return [
            ("POST", "/fapi/v1/algoOrder", "algo_order", True, True, self.place),
            ("DELETE", "/fapi/v1/algoOrder", "algo_cancel", True, True, self.cancel),
            ("GET", "/fapi/v1/algoOrder", "algo_query", True, False, self.query),
            ("GET", "/fapi/v1/openAlgoOrders", "algo_open", True, False, self.open_orders),
        ]

    async def place(self, params: Params) -> Any:
        symbol = self._symbol(params)
        if params.get("algoType") != "CONDITIONAL" or params.get("type") != "STOP_MARKET":
            raise Refusal(400, -1116, "Invalid orderType.")
        try:
            side = OrderSide(params.get("side", "").lower())
        except ValueError:
            raise Refusal(400, -1117, "Invalid side.") from None
        amount = positive_param(params.get("quantity"), "quantity")
        trigger = positive_param(params.get("triggerPrice"), "triggerPrice")
        working_type = params.get("workingType", "CONTRACT_PRICE").upper()
        if working_type not in WORKING_TYPES:
            raise Refusal(400, -1100, "Illegal characters found in parameter 'workingType'.")
        leg_name = params.get("positionSide", "BOTH").upper()
        closing = Side.LONG if side is OrderSide.SELL else Side.SHORT
        if leg_name == "BOTH":
            if params.get("reduceOnly", "false").lower() != "true":
                # This venue rests reduce-only stops only (what a backstop is).
                raise Refusal(400, -2022, "ReduceOnly Order is rejected.")
        elif leg_name != closing.value.upper():
            raise Refusal(400, -4006, "Invalid position side.")
        request = StopRequest(
            symbol=symbol,
            side=side,
            amount=amount,
            trigger_price=trigger,
            position_side=closing,
            client_order_id=params.get("clientAlgoId") or f"paper-{uuid.uuid4().hex[:20]}",
            hedged=leg_name != "BOTH",
        )
        try:
            placed = await self.book.place_stop(request, leg_name, working_type)
        except InvalidOrder as error:
            raise self._refusal(str(error)) from None
        return self._reply(placed, query=False)

    async def cancel(self, params: Params) -> Any:
        stop = await self._find(params)
        if not stop.resting:
            raise Refusal(400, -2011, "Unknown order sent.")
        after = await self.book.cancel_stop(stop)
        if after.status is not StopStatus.CANCELED:
            # The replay fired it on the way in: no longer open, as Binance would say.
            raise Refusal(400, -2011, "Unknown order sent.")
        return payloads.algo_canceled(after)

    async def query(self, params: Params) -> Any:
        return self._reply(await self._find(params), query=True)

    async def open_orders(self, params: Params) -> Any:
        wanted = params.get("symbol")
        symbols = [self._symbol(params)] if wanted else list(self.book.markets)
        stops = await self.book.open_stops(symbols)
        return [self._reply(stop, query=True) for stop in stops]

    def _reply(self, stop: StopOrder, *, query: bool) -> Any:
        self.book.note_fired()
        flags = self.book.stop_flags(stop.client_order_id)
        return payloads.algo_order(
            stop,
            position_side=flags["position_side"],
            working_type=flags["working_type"],
            create_ms=flags["create_ms"],
            update_ms=flags["update_ms"],
            trigger_ms=flags["trigger_ms"],
            actual=self.book.stop_fill(stop.client_order_id),
            query=query,
        )

    async def _find(self, params: Params) -> StopOrder:
        symbol = self._symbol(params)
        client_id = params.get("clientAlgoId") or None
        number = int_param(params.get("algoId"))
        if client_id is None and number is None:
            raise Refusal(400, -1102, "Param 'clientAlgoId' or 'algoId' must be sent.")
        found = await self.book.find_stop(symbol, client_id, number)
        if found is None:
            raise Refusal(400, -2013, "Order does not exist.")
        return found

    def _refusal(self, message: str) -> Refusal:
        if "would trigger immediately" in message:
            return Refusal(400, -2021, "Order would immediately trigger.")
        return self._refusal_for(message)
