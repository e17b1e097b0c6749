"""A simulated derivatives venue that implements the Exchange port.

`SimAccount` holds the wallets, positions and marks; this adds the port's methods and
executes orders against the account with taker fees and slippage. Its port methods
raise the same errors a real adapter does, so the service cannot tell it from a venue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from bot.domain.leverage import round_down
from bot.domain.models import ZERO, AccountSnapshot, MarginMode, MarketRules, OrderSide, Side
from bot.domain.stops import StopOrder, StopStatus
from bot.exchange.port import (
    InsufficientFunds,
    InvalidOrder,
    MarginResult,
    OrderRequest,
    OrderResult,
    OrderStatus,
    StopRequest,
    TransferResult,
)
from bot.exchange.sim.account import SimAccount, SimState
from bot.exchange.sim.fills import Fill, market_fill
from bot.exchange.sim.positions import SimPosition
from bot.exchange.sim.stops import check_stop_request, reached, reference_price

__all__ = ["Fill", "SimPosition", "SimState", "SimulatedExchange"]


class SimulatedExchange(SimAccount):
    """A `SimAccount` behind the Exchange port: transfers, margin, market and stop orders."""

    def __init__(self, **account: Any) -> None:
        super().__init__(**account)
        # Transfers by client id, as a venue that takes one keeps them (see fetch_transfer).
        self.transfers: dict[str, TransferResult] = {}

    # -- the Exchange port ----------------------------------------------------------

    async def fetch_snapshot(self, include_source: bool = True) -> AccountSnapshot:
        return self.snapshot(include_source)

    async def fetch_source(self, snapshot: AccountSnapshot) -> AccountSnapshot:
        return snapshot.with_source(self.source_wallet())

    async def transfer(
        self, currency: str, amount: Decimal, into_derivatives: bool, client_id: str
    ) -> TransferResult:
        if currency != self.settle:
            raise InvalidOrder(f"transfer currency {currency} is not {self.settle}")
        if amount <= ZERO or amount < self.min_transfer:
            raise InvalidOrder(f"transfer amount {amount} is below the minimum {self.min_transfer}")
        if into_derivatives:
            if amount > self.source:
                raise InsufficientFunds(f"source wallet holds {self.source}, asked {amount}")
            self.source -= amount
            self.wallet += amount
        else:
            free = self.cross_free()
            if amount > free:
                raise InsufficientFunds(f"derivatives wallet frees {free}, asked {amount}")
            self.wallet -= amount
            self.source += amount
        result = TransferResult(
            transfer_id=self._new_id("T"),
            currency=currency,
            amount=amount,
            into_derivatives=into_derivatives,
        )
        self.transfers[client_id] = result
        return result

    async def fetch_transfer(
        self,
        client_id: str,
        currency: str,
        amount: Decimal,
        into_derivatives: bool,
        since: datetime,
    ) -> TransferResult | None:
        found = self.transfers.get(client_id)
        if found is None or (found.currency, found.into_derivatives) != (
            currency,
            into_derivatives,
        ):
            return None
        return found

    async def adjust_margin(
        self, symbol: str, side: Side, amount: Decimal, add: bool, hedged: bool = False
    ) -> MarginResult:
        pos = self._position(symbol, side)
        if pos.margin_mode is not MarginMode.ISOLATED:
            raise InvalidOrder(f"{symbol} {side.value} is not an isolated position")
        if amount <= ZERO:
            raise InvalidOrder(f"margin amount must be positive, got {amount}")
        if add:
            free = self.cross_free()
            if amount > free:
                raise InsufficientFunds(f"derivatives wallet frees {free}, asked {amount}")
            self.wallet -= amount
            pos.isolated_margin += amount
        else:
            mark = self.mark(symbol)
            initial = self._notional(pos, mark) / self.leverage_setting
            removable = min(
                pos.isolated_margin, pos.isolated_margin + self._pnl(pos, mark) - initial
            )
            if amount > removable:
                raise InsufficientFunds(f"{symbol}: at most {max(removable, ZERO)} removable")
            pos.isolated_margin -= amount
            self.wallet += amount
        return MarginResult(symbol=symbol, side=side, amount=amount, add=add)

    async def create_order(self, request: OrderRequest) -> OrderResult:
        if request.client_order_id in self._orders:
            raise InvalidOrder(f"duplicate client order id {request.client_order_id}")
        rules = self._rules(request.symbol)
        mark = self.mark(request.symbol)
        step = rules.amount_step or ZERO
        amount = request.amount
        if amount <= ZERO or (step > ZERO and round_down(amount, step) != amount):
            raise InvalidOrder(f"{request.symbol}: amount {amount} breaks precision {step}")
        if amount < rules.min_amount:
            raise InvalidOrder(f"{request.symbol}: amount {amount} < minimum {rules.min_amount}")
        side = request.position_side
        if request.reduce_only:
            fill = self._reduce(request, rules, mark, side)
        else:
            fill = self._increase(request, rules, mark, side)
        self.last_fill = fill
        result = OrderResult(
            client_order_id=request.client_order_id,
            exchange_id=self._new_id("O"),
            symbol=request.symbol,
            side=request.side,
            amount=amount,
            filled=amount,
            average_price=fill.price,
            fee=fill.fee,
            status=OrderStatus.CLOSED,
        )
        self._orders[request.client_order_id] = result
        return result

    async def fetch_order_by_client_id(
        self, symbol: str, client_order_id: str
    ) -> OrderResult | None:
        self._rules(symbol)
        result = self._orders.get(client_order_id)
        return result if result is not None and result.symbol == symbol else None

    async def place_stop(self, request: StopRequest) -> StopOrder:
        rules = self._rules(request.symbol)
        check_stop_request(
            request,
            rules,
            self.mark(request.symbol),
            self._positions.get((request.symbol, request.position_side)),
            known=request.client_order_id in self._stops,
        )
        order = StopOrder(
            client_order_id=request.client_order_id,
            exchange_id=self._new_id("S"),
            symbol=request.symbol,
            side=request.side,
            amount=request.amount,
            trigger_price=request.trigger_price,
            status=StopStatus.OPEN,
            position_side=request.position_side,
        )
        self._stops[request.client_order_id] = order
        self.stop_revision += 1
        return order

    async def cancel_stop(self, order: StopOrder) -> StopOrder:
        found = self._find_stop(order)
        if found is None:
            # Nothing rests under that id: for the caller that is what a cancel is for.
            return replace(order, status=StopStatus.CANCELED)
        if found.resting:
            found = replace(found, status=StopStatus.CANCELED)
            self._stops[found.client_order_id] = found
            self.stop_revision += 1
        return found

    def stop_book(self) -> tuple[StopOrder, ...]:
        """Every stop the venue holds, in any state (`stop_revision` tells it changed)."""
        return tuple(self._stops.values())

    async def fetch_stops(self, symbols: Sequence[str]) -> tuple[StopOrder, ...]:
        for symbol in symbols:
            self._rules(symbol)
        return tuple(s for s in self._stops.values() if s.resting and s.symbol in symbols)

    async def fetch_stop(self, symbol: str, client_order_id: str) -> StopOrder | None:
        self._rules(symbol)
        found = self._stops.get(client_order_id)
        return found if found is not None and found.symbol == symbol else None

    def stop_fill(self, client_order_id: str) -> OrderResult | None:
        """The market order a triggered stop spawned (None: it has not triggered, or it
        had nothing left to reduce)."""
        spawned = self._stop_fills.get(client_order_id)
        return None if spawned is None else self._orders.get(spawned)

    def stop_state(self, client_order_id: str) -> StopOrder | None:
        """The stop with this client id in whatever state it is (any symbol)."""
        return self._stops.get(client_order_id)

    def order_by_exchange_id(self, exchange_id: str) -> OrderResult | None:
        return next((o for o in self._orders.values() if o.exchange_id == exchange_id), None)

    async def close(self) -> None:
        return None

    # -- stops firing -------------------------------------------------------------------

    def trigger_stops(
        self, symbol: str, open_price: Decimal, adverse_price: Decimal
    ) -> list[StopOrder]:
        """Fire every resting stop on `symbol` that a move from `open_price` to
        `adverse_price` reaches, nearest the open first; their states afterwards.

        Call it per bar (or streamed sub-step) before the liquidation check, with the
        leg's adverse extreme (the low fires sell stops, the high buy stops; a gap past a
        trigger fires it either way). Each fills as a reduce-only market order at its
        trigger, or at the open when the bar opened past it, moved by the slippage; it
        fills at most what is left of its leg, and nothing (REJECTED) when no leg is left.
        """
        self._rules(symbol)
        fired = []
        resting = [s for s in self._stops.values() if s.symbol == symbol]
        for stop in reached(resting, open_price, adverse_price):
            done = self._fire(stop, reference_price(stop, open_price))
            self._stops[stop.client_order_id] = done
            self.stop_revision += 1
            fired.append(done)
        return fired

    def _fire(self, stop: StopOrder, price: Decimal) -> StopOrder:
        side = stop.position_side or (Side.LONG if stop.side is OrderSide.SELL else Side.SHORT)
        pos = self._positions.get((stop.symbol, side))
        if pos is None or stop.side is not side.closing_order_side:
            return replace(stop, status=StopStatus.REJECTED)
        amount = min(stop.amount, pos.contracts)
        request = OrderRequest(
            symbol=stop.symbol,
            side=stop.side,
            amount=amount,
            reduce_only=True,
            position_side=side,
            client_order_id=f"stop-{stop.exchange_id}",
            hedged=self.hedge_mode,
        )
        # Binance exempts reduce-only orders from the minimum notional.
        fill = self._reduce(request, self._rules(stop.symbol), price, side, min_cost=False)
        self.last_fill = fill
        self._orders[request.client_order_id] = OrderResult(
            client_order_id=request.client_order_id,
            exchange_id=self._new_id("O"),
            symbol=stop.symbol,
            side=stop.side,
            amount=amount,
            filled=amount,
            average_price=fill.price,
            fee=fill.fee,
            status=OrderStatus.CLOSED,
        )
        self._stop_fills[stop.client_order_id] = request.client_order_id
        return replace(
            stop,
            status=StopStatus.TRIGGERED,
            filled=amount,
            average_price=fill.price,
            fee=fill.fee,
        )

    def _find_stop(self, order: StopOrder) -> StopOrder | None:
        found = self._stops.get(order.client_order_id)
        if found is not None and found.exchange_id == order.exchange_id:
            return found
        return next((s for s in self._stops.values() if s.exchange_id == order.exchange_id), found)

    # -- order execution --------------------------------------------------------------

    def _reduce(
        self,
        request: OrderRequest,
        rules: MarketRules,
        mark: Decimal,
        side: Side,
        *,
        min_cost: bool = True,
    ) -> Fill:
        pos = self._positions.get((request.symbol, side))
        if pos is None:
            raise InvalidOrder(f"reduce-only: no {side.value} position on {request.symbol}")
        if request.side is not side.closing_order_side:
            raise InvalidOrder(f"reduce-only {request.side.value} cannot reduce a {side.value}")
        if request.amount > pos.contracts:
            raise InvalidOrder(
                f"reduce-only {request.amount} exceeds the position ({pos.contracts})"
            )
        closes = request.amount == pos.contracts
        fill = market_fill(request.side, request.amount, rules, mark, self.slippage)
        if min_cost and not closes and fill.notional < rules.min_cost:
            raise InvalidOrder(f"{request.symbol}: notional {fill.notional} < {rules.min_cost}")
        fraction = request.amount / pos.contracts
        realized = side.sign * request.amount * rules.contract_size * (fill.price - pos.entry_price)
        if pos.margin_mode is MarginMode.ISOLATED:
            released = pos.isolated_margin * fraction
            pos.isolated_margin -= released
            self.wallet += released
        self.wallet += realized - fill.fee
        pos.contracts -= request.amount
        if pos.contracts == ZERO:
            del self._positions[(request.symbol, side)]
        return fill

    def _increase(
        self, request: OrderRequest, rules: MarketRules, mark: Decimal, side: Side
    ) -> Fill:
        if request.side is not side.opening_order_side:
            raise InvalidOrder(f"{request.side.value} does not add to a {side.value}")
        pos = self._positions.get((request.symbol, side))
        opposite = self._positions.get(
            (request.symbol, Side.SHORT if side is Side.LONG else Side.LONG)
        )
        if opposite is not None and not self.hedge_mode:
            raise InvalidOrder(f"{request.symbol}: one-way mode holds a {opposite.side.value}")
        fill = market_fill(request.side, request.amount, rules, mark, self.slippage)
        if fill.notional < rules.min_cost:
            raise InvalidOrder(f"{request.symbol}: notional {fill.notional} < {rules.min_cost}")
        needed = fill.notional / self.leverage_setting + fill.fee
        if needed > self.cross_free():
            raise InsufficientFunds(f"{request.symbol}: needs {needed} free margin")
        self.wallet -= fill.fee
        if pos is None:
            self._positions[(request.symbol, side)] = SimPosition(
                request.symbol, side, request.amount, fill.price, MarginMode.CROSS
            )
        else:
            total = pos.contracts + request.amount
            pos.entry_price = (
                pos.entry_price * pos.contracts + fill.price * request.amount
            ) / total
            pos.contracts = total
        return fill
