"""Resting stop-market orders in the simulated venue: when they fire within a bar, in what
order, at what reference price, and which requests a venue refuses.

A stop closing a long (a sell) fires when the price falls to its trigger; one closing a
short (a buy) when the price rises to it. Within a bar the price is taken to move from
the open to the adverse extreme, so the stops nearest the open fire first; a bar that
opens already past a trigger (a gap) fills that stop at the open, not at its trigger,
because no trade ever happened at the trigger.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from bot.domain.leverage import round_down
from bot.domain.models import ZERO, MarketRules, OrderSide
from bot.domain.stops import StopOrder
from bot.exchange.port import InvalidOrder, StopRequest
from bot.exchange.sim.positions import SimPosition


def fires_at(side: OrderSide, trigger: Decimal, price: Decimal) -> bool:
    """Whether a stop of `side` with `trigger` fires when the price is at `price`."""
    return price <= trigger if side is OrderSide.SELL else price >= trigger


def reached(stops: Iterable[StopOrder], open_price: Decimal, adverse: Decimal) -> list[StopOrder]:
    """The resting stops a move from `open_price` to `adverse` fires, nearest the open first.

    A stop is reached when either end of the move is past its trigger, so `adverse` may
    be either extreme: the low fires sell stops, the high buy stops, and a gap fires both.
    """
    hit = [
        s
        for s in stops
        if s.resting
        and (
            fires_at(s.side, s.trigger_price, open_price)
            or fires_at(s.side, s.trigger_price, adverse)
        )
    ]
    return sorted(hit, key=lambda s: _distance(s, open_price))


def reference_price(stop: StopOrder, open_price: Decimal) -> Decimal:
    """What the stop's market order fills around (before slippage): its trigger, or the
    open when the bar opened already past it."""
    return open_price if fires_at(stop.side, stop.trigger_price, open_price) else stop.trigger_price


def _distance(stop: StopOrder, open_price: Decimal) -> Decimal:
    # How far the price must travel from the open, in the stop's direction, to fire it;
    # negative for a gapped stop, so those (all filled at the open) come first.
    if stop.side is OrderSide.SELL:
        return open_price - stop.trigger_price
    return stop.trigger_price - open_price


def check_stop_request(
    request: StopRequest,
    rules: MarketRules,
    mark: Decimal,
    position: SimPosition | None,
    known: bool,
) -> None:
    """Refuse what a venue refuses (raises InvalidOrder): a duplicate client id, an
    amount off the step or below the minimum, a trigger that is not a price, a stop that
    cannot reduce an existing leg, and one whose trigger the mark has already crossed
    (Binance's -2021 "Order would immediately trigger")."""
    symbol = request.symbol
    if known:
        raise InvalidOrder(f"duplicate client order id {request.client_order_id}")
    step = rules.amount_step or ZERO
    amount = request.amount
    if amount <= ZERO or (step > ZERO and round_down(amount, step) != amount):
        raise InvalidOrder(f"{symbol}: amount {amount} breaks precision {step}")
    if amount < rules.min_amount:
        raise InvalidOrder(f"{symbol}: amount {amount} < minimum {rules.min_amount}")
    trigger = request.trigger_price
    if not trigger.is_finite() or trigger <= ZERO:
        raise InvalidOrder(f"{symbol}: trigger price {trigger} breaks precision")
    side = request.position_side
    if position is None:
        raise InvalidOrder(f"reduce-only: no {side.value} position on {symbol}")
    if request.side is not side.closing_order_side:
        raise InvalidOrder(f"reduce-only {request.side.value} cannot reduce a {side.value}")
    if fires_at(request.side, trigger, mark):
        raise InvalidOrder(f"{symbol}: stop at {trigger} would trigger immediately (mark {mark})")
