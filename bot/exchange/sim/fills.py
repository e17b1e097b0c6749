"""How the simulated venue fills a market order: at the mark, moved by slippage."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from bot.domain.models import MarketRules, OrderSide


@dataclass(frozen=True, slots=True)
class Fill:
    """What one executed order did to the account (for reports)."""

    price: Decimal
    notional: Decimal
    fee: Decimal
    slippage_cost: Decimal


def market_fill(
    order_side: OrderSide,
    amount: Decimal,
    rules: MarketRules,
    mark: Decimal,
    slippage: Decimal,
) -> Fill:
    """Fill `amount` contracts at `mark` moved `slippage` against the order, taker fee."""
    direction = 1 if order_side is OrderSide.BUY else -1
    price = mark * (1 + direction * slippage)
    size = amount * rules.contract_size
    notional = size * price
    return Fill(
        price=price,
        notional=notional,
        fee=notional * rules.taker_fee,
        slippage_cost=abs(price - mark) * size,
    )
