"""Backstops through ccxt: reduce-only stop-market orders on the mark (DESIGN.md §11).

The venue-neutral half of the adapter's four stop methods: each venue's profile says
how its conditional orders are sent, listed, looked up and what its words mean
(`stop_order_args`, `fetch_open_stops`, `find_stop`, `stop_fields`); this module sends
them through the adapter's own write and read paths (retry, error translation, request
metrics) and turns what comes back into verified `StopOrder`s.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from decimal import Decimal
from typing import Any

from ccxt.base.decimal_to_precision import TICK_SIZE

from bot.domain.models import ZERO, MarginMode, OrderSide, Side
from bot.domain.stops import StopOrder, StopStatus
from bot.exchange.ccxt import verify
from bot.exchange.ccxt.errors import RetryPolicy, retrying, translated
from bot.exchange.ccxt.exchange_profile import Ccxt, ExchangeProfile
from bot.exchange.ccxt.payloads import StopFields, decimal_or_none, fee_paid, text_or_none
from bot.exchange.port import (
    InvalidOrder,
    OperationalError,
    OutcomeUnknown,
    StopRequest,
    UnverifiedData,
)

logger = logging.getLogger(__name__)

Write = Callable[..., Awaitable[Any]]
Observed = Callable[[str], AbstractContextManager[None]]


class StopDesk:
    """Places, cancels, lists and looks up one account's stop orders.

    `write` is the adapter's write path (sent again only when refused before acting; a
    lost reply is `OutcomeUnknown`), `observed` its request-metrics context.
    """

    def __init__(
        self,
        name: str,
        exchange: Ccxt,
        profile: ExchangeProfile,
        *,
        secrets: Sequence[str],
        retry: RetryPolicy,
        write: Write,
        observed: Observed,
        hedged: bool,
        margin_mode: Callable[[str, Side], MarginMode],
    ) -> None:
        self._name = name
        self._exchange = exchange
        self._profile = profile
        self._secrets = secrets
        self._retry = retry
        self._write = write
        self._observed = observed
        self._hedged = hedged
        self._margin_mode = margin_mode

    async def place(self, request: StopRequest) -> StopOrder:
        leg = request.position_side
        if request.side is not leg.closing_order_side:
            raise InvalidOrder(f"a {request.side.value} stop cannot reduce a {leg.value} leg")
        if request.amount <= ZERO or request.trigger_price <= ZERO:
            raise InvalidOrder(
                f"stop amount and trigger must be positive, got {request.amount} at "
                f"{request.trigger_price}"
            )
        amount, trigger = self._at_precision(request)
        kind, price, params = self._profile.stop_order_args(
            request,
            str(trigger),
            request.hedged or self._hedged,
            self._margin_mode(request.symbol, leg),
        )
        what = (
            f"stop {request.side.value} {amount} {request.symbol} at {trigger} "
            f"({request.client_order_id})"
        )
        reply = await self._write(
            lambda: self._exchange.create_order(
                request.symbol, kind, request.side.value, float(amount), price, params
            ),
            what,
            kind="stop",
        )
        if not isinstance(reply, Mapping) or not isinstance(reply.get("info"), Mapping):
            # ccxt reads a truncated or empty body as an order with nothing in it.
            raise OutcomeUnknown(f"stop {request.client_order_id}: the reply carries no order")
        fields = self._profile.stop_fields(reply)
        if fields.status is StopStatus.REJECTED:
            raise OperationalError(f"stop {request.client_order_id}: the venue refused it")
        if not text_or_none(fields.exchange_id):
            # Hyperliquid answers a resting trigger order with "waitingForTrigger" and no
            # order id: the venue took it; its id is read by our client id.
            found = await self.find(request.symbol, request.client_order_id)
            if found is None:
                raise OutcomeUnknown(
                    f"stop {request.client_order_id}: accepted, but not found by its client id"
                )
            return found
        return stop_order(
            fields,
            what=f"stop {request.client_order_id}",
            symbol=request.symbol,
            client_order_id=request.client_order_id,
            fallback=StopOrder(
                client_order_id=request.client_order_id,
                exchange_id="",
                symbol=request.symbol,
                side=request.side,
                amount=amount,
                trigger_price=trigger,
                status=StopStatus.OPEN,
                position_side=leg,
            ),
        )

    async def cancel(self, order: StopOrder) -> StopOrder:
        params = self._profile.stop_cancel_params()
        try:
            await self._write(
                lambda: self._exchange.cancel_order(order.exchange_id, order.symbol, params),
                f"cancel stop {order.exchange_id} on {order.symbol} ({order.client_order_id})",
                kind="cancel_stop",
            )
        except (InvalidOrder, OperationalError) as refusal:
            # Refused: most often because the stop is no longer resting (it triggered or
            # was cancelled already: ccxt's OrderNotFound, Binance's -20124). Its current
            # state is the answer then; a stop still resting was refused for a reason.
            found = await self.find(order.symbol, order.client_order_id)
            if found is None:
                # Not found by its client id (a stop someone placed without one, or one
                # aged out of the venue's history): resting only if still listed.
                listed = await self.listing([order.symbol])
                if any(stop.exchange_id == order.exchange_id for stop in listed):
                    raise
                logger.warning(
                    "%s: cancelling stop %s refused, and it rests no more: %s",
                    self._name, order.exchange_id, refusal,
                )  # fmt: skip
                return replace(order, status=StopStatus.CANCELED)
            if found.resting:
                raise
            return found
        return replace(order, status=StopStatus.CANCELED)

    async def listing(self, symbols: Sequence[str]) -> tuple[StopOrder, ...]:
        wanted = sorted(set(symbols))
        if not wanted:
            return ()

        async def read() -> list[Mapping[str, Any]]:
            with translated(self._secrets), self._observed("stops"):
                return await self._profile.fetch_open_stops(self._exchange, wanted)

        rows = await retrying(read, self._retry, what=f"{self._name}: stops")
        if not isinstance(rows, list):
            raise UnverifiedData(f"{self._name}: stops: the reply is not a list")
        stops: list[StopOrder] = []
        for row in rows:
            if not isinstance(row, Mapping) or not isinstance(row.get("info"), Mapping):
                raise UnverifiedData(f"{self._name}: stops: a row is not an order")
            fields = self._profile.stop_fields(row)
            symbol = row.get("symbol")
            if not fields.backstop or fields.status is not StopStatus.OPEN:
                continue
            if symbol not in wanted:
                continue
            stops.append(
                stop_order(fields, what=f"{self._name}: stops: {symbol}", symbol=str(symbol))
            )
        return tuple(stops)

    async def find(self, symbol: str, client_order_id: str) -> StopOrder | None:
        async def read() -> Mapping[str, Any] | None:
            with translated(self._secrets), self._observed("stop"):
                return await self._profile.find_stop(self._exchange, symbol, client_order_id)

        found = await retrying(read, self._retry, what=f"{self._name}: find {client_order_id}")
        if found is None:
            return None
        if not isinstance(found.get("info"), Mapping):
            raise UnverifiedData(f"stop {client_order_id}: the reply is not an order")
        fields = self._profile.stop_fields(found)
        stop = stop_order(
            fields, what=f"stop {client_order_id}", symbol=symbol, client_order_id=client_order_id
        )
        if stop.status is StopStatus.TRIGGERED and fields.spawned_order_id is not None:
            stop = await self._with_spawned_fill(stop, fields.spawned_order_id)
        return stop

    async def _with_spawned_fill(self, stop: StopOrder, spawned_id: str) -> StopOrder:
        """The triggered stop with the fill of the market order it sent (Binance's algo
        orders and OKX's report that order's id, not its fill)."""

        async def read() -> Mapping[str, Any]:
            with translated(self._secrets), self._observed("stop"):
                order: Mapping[str, Any] = await self._exchange.fetch_order(spawned_id, stop.symbol)
                return order

        order = await retrying(read, self._retry, what=f"{self._name}: order {spawned_id}")
        what = f"stop {stop.client_order_id}: order {spawned_id}"
        filled = verify.optional_number(order.get("filled"), f"{what}: filled")
        average = _price_or_none(order.get("average"), f"{what}: average")
        return replace(
            stop,
            filled=filled if filled is not None else stop.filled,
            average_price=average if average is not None else stop.average_price,
            fee=fee_paid(order),
        )

    def _trigger_at_precision(self, request: StopRequest) -> Decimal:
        """The trigger on the market's tick, rounded toward the mark (up for a long's sell
        stop, down for a short's buy stop): rounding must never move a backstop toward
        liquidation."""
        wanted = request.trigger_price
        exchange = self._exchange
        rounded = Decimal(exchange.price_to_precision(request.symbol, float(wanted)))
        toward_mark = 1 if request.side is OrderSide.SELL else -1
        if (rounded - wanted) * toward_mark >= 0:
            return rounded
        tick = exchange.market(request.symbol)["precision"]["price"]
        if exchange.precisionMode == TICK_SIZE and tick:
            return rounded + toward_mark * Decimal(str(tick))
        # Significant digits (Hyperliquid): the tick depends on the magnitude; the price
        # mirrored across the wanted one rounds to the next tick on the mark's side.
        mirrored = Decimal(exchange.price_to_precision(request.symbol, float(2 * wanted - rounded)))
        return mirrored if (mirrored - wanted) * toward_mark >= 0 else rounded

    def _at_precision(self, request: StopRequest) -> tuple[Decimal, Decimal]:
        """The amount (down to the step, as ccxt truncates it) and the trigger (on the tick,
        toward the mark) that ccxt will send: the stop reported back is the one resting."""
        with translated(self._secrets):
            amount = Decimal(
                self._exchange.amount_to_precision(request.symbol, float(request.amount))
            )
            trigger = self._trigger_at_precision(request)
        if amount <= ZERO or trigger <= ZERO:
            raise InvalidOrder(
                f"stop {request.amount} at {request.trigger_price} on {request.symbol} rounds "
                "to nothing at the market's precision"
            )
        return amount, trigger


def stop_order(
    fields: StopFields,
    *,
    what: str,
    symbol: str,
    client_order_id: str | None = None,
    fallback: StopOrder | None = None,
) -> StopOrder:
    """A verified `StopOrder` from a profile's fields. `client_order_id`: ours, when the
    caller knows it (the venue may echo its own form); `fallback`: what was sent, for
    the fields a reply to placing leaves out. Raises `UnverifiedData` for an order
    without an id, a side, a positive amount or trigger, or with an unknown status."""
    exchange_id = text_or_none(fields.exchange_id)
    if exchange_id is None:
        raise UnverifiedData(f"{what}: no order id")
    status = fields.status
    if status is None:
        if fallback is None or fields.word:
            raise UnverifiedData(f"{what}: status {fields.word!r} is not one levbot knows")
        status = fallback.status
    if fields.side in ("buy", "sell"):
        side = OrderSide(str(fields.side))
    elif fallback is not None:
        side = fallback.side
    else:
        raise UnverifiedData(f"{what}: no side")
    amount = _number_or(fields.amount, f"{what}: amount", fallback.amount if fallback else None)
    trigger = _number_or(
        fields.trigger_price,
        f"{what}: trigger price",
        fallback.trigger_price if fallback else None,
    )
    average = _price_or_none(fields.average_price, f"{what}: average")
    filled = verify.optional_number(fields.filled, f"{what}: filled")
    fee = verify.optional_number(fields.fee, f"{what}: fee", signed=True)
    venue_id = text_or_none(fields.client_order_id)
    return StopOrder(
        client_order_id=client_order_id or venue_id or exchange_id,
        exchange_id=exchange_id,
        symbol=symbol,
        side=side,
        amount=amount,
        trigger_price=trigger,
        status=status,
        position_side=fields.position_side
        or (fallback.position_side if fallback is not None else None),
        filled=filled if filled is not None else ZERO,
        average_price=average,
        fee=abs(fee) if fee is not None else ZERO,
    )


def _price_or_none(value: object, what: str) -> Decimal | None:
    """A fill's average price; venues report "0" (or "") until something filled."""
    price = verify.optional_number(value, what)
    return price if price else None


def _number_or(value: object, what: str, fallback: Decimal | None) -> Decimal:
    if fallback is not None and decimal_or_none(value) in (None, ZERO):
        return fallback
    return verify.number(value, what, positive=True)
