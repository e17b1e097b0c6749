"""A simulated position and the margin figures the simulated venue reports for it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from bot.domain.leverage import maintenance_from_tiers
from bot.domain.models import ZERO, MarginMode, MarketRules, Position, Side

# Binance reports liquidation prices to 8 decimals.
LIQUIDATION_PRICE_QUANTUM = Decimal("1e-8")


@dataclass(slots=True)
class SimPosition:
    symbol: str
    side: Side
    contracts: Decimal
    entry_price: Decimal
    margin_mode: MarginMode
    isolated_margin: Decimal = ZERO


def notional_at(pos: SimPosition, rules: MarketRules, price: Decimal) -> Decimal:
    """`c * k * price`."""
    return pos.contracts * rules.contract_size * price


def pnl_at(pos: SimPosition, rules: MarketRules, price: Decimal) -> Decimal:
    """Unrealized PnL at `price`: `s * c * k * (price - e)`."""
    size = pos.contracts * rules.contract_size
    return pos.side.sign * size * (price - pos.entry_price)


def maintenance_at(pos: SimPosition, rules: MarketRules, price: Decimal) -> Decimal:
    """Maintenance margin at `price` from the market's tiers (zero without tiers)."""
    tiers = rules.tiers
    if not tiers:
        return ZERO
    return maintenance_from_tiers(tiers, notional_at(pos, rules, price))


def reported_position(
    pos: SimPosition,
    rules: MarketRules,
    mark: Decimal,
    maintenance: Decimal,
    liquidation: Decimal | None,
    *,
    hedged: bool,
) -> Position:
    """The domain `Position` as the venue reports it, liquidation price rounded like Binance."""
    if liquidation is not None:
        # Round toward the liquidated side, so that a bar reaching the reported
        # price does liquidate (28-digit division can land a hair on the safe side).
        rounding = ROUND_FLOOR if pos.side is Side.LONG else ROUND_CEILING
        liquidation = liquidation.quantize(LIQUIDATION_PRICE_QUANTUM, rounding=rounding) or None
    return Position(
        symbol=pos.symbol,
        side=pos.side,
        contracts=pos.contracts,
        entry_price=pos.entry_price,
        mark_price=mark,
        margin_mode=pos.margin_mode,
        contract_size=rules.contract_size,
        isolated_margin=pos.isolated_margin,
        maintenance_margin=maintenance,
        liquidation_price=liquidation,
        hedged=hedged,
    )
