"""ccxt's payloads (floats, numeric strings, None, '') as the domain's Decimal values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from ccxt.base.decimal_to_precision import DECIMAL_PLACES, TICK_SIZE

from bot.domain.models import (
    ONE,
    ZERO,
    MaintenanceTier,
    MarginMode,
    MarketRules,
    OrderSide,
    Position,
    Side,
)
from bot.domain.stops import StopStatus
from bot.exchange.port import OrderResult, OrderStatus

# When ccxt knows no fee for a market (the domain's default too).
DEFAULT_TAKER_FEE = Decimal("0.0005")
# ccxt's order states mapped onto the port's; None (not reported yet) means accepted.
# ccxt's unified order states (and the British spelling some venues echo) in ours.
_ORDER_STATUS = {
    "open": OrderStatus.OPEN,
    "closed": OrderStatus.CLOSED,
    "canceled": OrderStatus.CANCELED,
    "cancelled": OrderStatus.CANCELED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
}


def decimal_or_none(value: object) -> Decimal | None:
    """`Decimal(str(value))` for a finite number or numeric string; None otherwise."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def decimal_or_zero(value: object) -> Decimal:
    number = decimal_or_none(value)
    return ZERO if number is None else number


def entry_for(rows: object, key: str, value: str) -> Mapping[str, Any]:
    """The first dict in `rows` whose `key` is `value`; {} when there is none."""
    if isinstance(rows, list):
        for row in rows:
            if isinstance(row, dict) and row.get(key) == value:
                return row
    return {}


def amount_step(market: Mapping[str, Any], precision_mode: int) -> Decimal | None:
    """The amount step in contracts (ccxt 4.5 reports steps: TICK_SIZE mode)."""
    precision = (market.get("precision") or {}).get("amount")
    if precision_mode == TICK_SIZE:
        step = decimal_or_none(precision)
    elif precision_mode == DECIMAL_PLACES and precision is not None:
        step = ONE.scaleb(-int(precision))
    else:
        step = None
    return step if step is not None and step > ZERO else None


def contract_size(market: Mapping[str, Any]) -> Decimal:
    """What one contract holds (1 where ccxt leaves it empty)."""
    size = decimal_or_none(market.get("contractSize"))
    return size if size else ONE


def market_rules(
    market: Mapping[str, Any], tiers: tuple[MaintenanceTier, ...], precision_mode: int
) -> MarketRules:
    """Precision, minimums, taker fee and maintenance tiers of one ccxt market."""
    limits = market.get("limits") or {}
    taker = decimal_or_none(market.get("taker"))
    return MarketRules(
        symbol=market["symbol"],
        contract_size=contract_size(market),
        amount_step=amount_step(market, precision_mode),
        min_amount=decimal_or_zero((limits.get("amount") or {}).get("min")),
        min_cost=decimal_or_zero((limits.get("cost") or {}).get("min")),
        taker_fee=taker if taker is not None else DEFAULT_TAKER_FEE,
        tiers=tiers,
        linear=market.get("linear") is not False,
    )


def position(
    raw: Mapping[str, Any],
    *,
    side: str | None,
    contract_size: Decimal,
    margin_mode: MarginMode,
    isolated_margin: Decimal,
    maintenance_margin: Decimal | None,
    hedged: bool,
) -> Position | None:
    """One open leg (`side` as the profile reads it) from a ccxt position; None for a
    flat or unreadable one."""
    contracts = decimal_or_none(raw.get("contracts"))
    entry = decimal_or_none(raw.get("entryPrice"))
    if contracts is None or contracts == ZERO or entry is None or side not in ("long", "short"):
        return None
    mark = decimal_or_none(raw.get("markPrice"))
    liquidation = decimal_or_none(raw.get("liquidationPrice"))
    return Position(
        symbol=raw["symbol"],
        side=Side(side),
        contracts=abs(contracts),
        entry_price=entry,
        mark_price=mark if mark is not None and mark > ZERO else None,
        margin_mode=margin_mode,
        contract_size=contract_size,
        isolated_margin=isolated_margin if margin_mode is MarginMode.ISOLATED else ZERO,
        maintenance_margin=maintenance_margin,
        liquidation_price=liquidation if liquidation is not None and liquidation > ZERO else None,
        hedged=hedged,
    )


def order_result(
    order: Mapping[str, Any],
    *,
    symbol: str,
    client_order_id: str,
    side: OrderSide,
    amount: Decimal,
) -> OrderResult:
    """A ccxt order as the port's receipt; what the venue did not report falls back to
    the request (side, amount) or stays neutral (nothing filled, no fee, status open)."""
    reported_side = order.get("side")
    return OrderResult(
        # Ours, not the venue's echo: the journal matches on it.
        client_order_id=client_order_id,
        exchange_id=str(order.get("id") or ""),
        symbol=order.get("symbol") or symbol,
        side=OrderSide(reported_side) if reported_side in ("buy", "sell") else side,
        amount=decimal_or_none(order.get("amount")) or amount,
        filled=decimal_or_zero(order.get("filled")),
        average_price=decimal_or_none(order.get("average")),
        fee=fee_paid(order),
        status=_ORDER_STATUS.get(str(order.get("status")), OrderStatus.OPEN),
    )


def tiers_from_ccxt(rows: Sequence[Mapping[str, Any]]) -> tuple[MaintenanceTier, ...]:
    """ccxt leverage tiers (minNotional, maintenanceMarginRate) as maintenance tiers."""
    tiers = []
    for row in rows:
        floor = decimal_or_none(row.get("minNotional"))
        rate = decimal_or_none(row.get("maintenanceMarginRate"))
        if floor is not None and rate is not None:
            tiers.append(MaintenanceTier(floor, rate))
    return tuple(sorted(tiers, key=lambda tier: tier.floor))


@dataclass(frozen=True, slots=True, kw_only=True)
class StopFields:
    """One stop order as a venue reported it: the fields a venue's profile picked out of
    ccxt's order and the venue's own `info`, still raw (checked by `stop_orders`).

    `status` is None for a word the profile does not know (`word` keeps it for the
    message); `backstop` says whether the order is a reduce-only stop-market order (a
    listing skips anything else someone rests on the symbol); `spawned_order_id` names
    the market order a triggered stop sent, where its fill is read from that order."""

    exchange_id: object
    client_order_id: object
    side: object
    amount: object
    trigger_price: object
    status: StopStatus | None
    word: str
    backstop: bool = True
    position_side: Side | None = None
    filled: object = None
    average_price: object = None
    fee: object = None
    spawned_order_id: str | None = None


def fee_paid(order: Mapping[str, Any]) -> Decimal:
    """The fee a ccxt order reports (its `fee`, else the sum of its `fees`), as paid."""
    fee = decimal_or_none((order.get("fee") or {}).get("cost"))
    if fee is None:
        fee = sum((decimal_or_zero(item.get("cost")) for item in order.get("fees") or []), ZERO)
    return abs(fee)


def text_or_none(value: object) -> str | None:
    """A venue id as text; None for a missing, empty or zero one ("", 0, "0": not set)."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value)
    return None if text in ("", "0") else text
