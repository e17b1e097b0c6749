"""The leverage math of DESIGN.md §1, as pure functions on `Decimal`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from bot.domain.models import ONE, ZERO, MaintenanceTier, MarketRules, Position, Side


def notional(position: Position, mark: Decimal | None = None) -> Decimal:
    """`abs(c * k * m)` at the position's mark (or at `mark` when given)."""
    price = position.mark_price if mark is None else mark
    if price is None:
        raise ValueError(f"{position.symbol}: no mark price")
    return abs(position.contracts * position.contract_size * price)


def unrealized_pnl(position: Position, mark: Decimal | None = None) -> Decimal:
    """`s * c * k * (m - e)`."""
    price = position.mark_price if mark is None else mark
    if price is None:
        raise ValueError(f"{position.symbol}: no mark price")
    return (
        position.side.sign
        * position.contracts
        * position.contract_size
        * (price - position.entry_price)
    )


@dataclass(frozen=True, slots=True)
class TierBracket:
    """A maintenance tier with its cumulative maintenance amount `cum`."""

    floor: Decimal
    rate: Decimal
    cum: Decimal


def tier_brackets(tiers: Sequence[MaintenanceTier]) -> tuple[TierBracket, ...]:
    """Add `cum_i = cum_(i-1) + floor_i * (mmr_i - mmr_(i-1))` to a tier table."""
    # Hashing a table (a tuple of dataclasses of Decimals) costs more than the lookup it
    # keys: the same table object comes back on every margin figure, so look it up by
    # identity first. The entry keeps the table alive, so its id cannot be reused.
    entry = _BY_IDENTITY.get(id(tiers))
    if entry is not None and entry[0] is tiers:
        return entry[1]
    brackets = _brackets(tuple(tiers))
    if len(_BY_IDENTITY) >= _BY_IDENTITY_MAX:
        _BY_IDENTITY.clear()
    _BY_IDENTITY[id(tiers)] = (tiers, brackets)
    return brackets


_BY_IDENTITY: dict[int, tuple[Sequence[MaintenanceTier], tuple[TierBracket, ...]]] = {}
_BY_IDENTITY_MAX = 1024


# A venue has a handful of tier tables and every margin figure needs one: compute each
# table's brackets once (the tables are immutable values).
@lru_cache(maxsize=1024)
def _brackets(tiers: tuple[MaintenanceTier, ...]) -> tuple[TierBracket, ...]:
    brackets: list[TierBracket] = []
    cum = ZERO
    previous_rate = ZERO
    for tier in sorted(tiers, key=lambda t: t.floor):
        cum = cum + tier.floor * (tier.rate - previous_rate) if brackets else ZERO
        brackets.append(TierBracket(tier.floor, tier.rate, cum))
        previous_rate = tier.rate
    return tuple(brackets)


def bracket_for(brackets: Sequence[TierBracket], notional_value: Decimal) -> TierBracket:
    """The tier holding `notional_value` (the last whose floor is not above it)."""
    if not brackets:
        raise ValueError("no maintenance tiers")
    chosen = brackets[0]
    for bracket in brackets:
        if bracket.floor <= notional_value:
            chosen = bracket
        else:
            break
    return chosen


def maintenance_from_tiers(tiers: Sequence[MaintenanceTier], notional_value: Decimal) -> Decimal:
    """`n * mmr_i - cum_i` for the tier `i` holding the notional."""
    bracket = bracket_for(tier_brackets(tiers), notional_value)
    return notional_value * bracket.rate - bracket.cum


def maintenance_margin(position: Position, rules: MarketRules | None) -> Decimal | None:
    """The exchange's figure when reported, else from the tiers; None when neither is known."""
    if position.maintenance_margin is not None:
        return position.maintenance_margin
    if rules is None or not rules.tiers:
        return None
    return maintenance_from_tiers(rules.tiers, notional(position))


@dataclass(frozen=True, slots=True)
class ScopeMetrics:
    """Equity, exposure and risk of one scope (a cross account or one isolated position).

    `leverage` and `margin_ratio` are None when equity is not positive: that is an
    emergency (`insolvent`), never a division error.
    """

    equity: Decimal
    notional: Decimal
    maintenance: Decimal | None
    leverage: Decimal | None
    margin_ratio: Decimal | None
    liquidation_distance: Decimal | None

    @property
    def insolvent(self) -> bool:
        return self.equity <= ZERO and self.notional > ZERO


def scope_metrics(
    equity: Decimal,
    positions: Iterable[Position],
    markets: dict[str, MarketRules],
) -> ScopeMetrics:
    """Leverage `N / E`, margin ratio `sum(MM) / E` and the nearest liquidation distance."""
    positions = tuple(positions)
    gross = sum((notional(p) for p in positions), ZERO)
    maintenance: Decimal | None = ZERO
    for p in positions:
        mm = maintenance_margin(p, markets.get(p.symbol))
        maintenance = None if mm is None or maintenance is None else maintenance + mm
    distance = liquidation_distance(positions)
    if equity <= ZERO:
        return ScopeMetrics(equity, gross, maintenance, None, None, distance)
    ratio = None if maintenance is None else maintenance / equity
    return ScopeMetrics(equity, gross, maintenance, gross / equity, ratio, distance)


def liquidation_distance(positions: Iterable[Position]) -> Decimal | None:
    """Smallest `|mark - liquidation| / mark` over positions with a known liquidation price."""
    distances = [
        abs(p.mark_price - p.liquidation_price) / p.mark_price
        for p in positions
        if p.liquidation_price is not None and p.mark_price is not None and p.mark_price > ZERO
    ]
    return min(distances) if distances else None


def cross_equity(wallet: Decimal, positions: Iterable[Position]) -> Decimal:
    """`E = W + sum(u_p)` over the cross positions."""
    return wallet + sum((unrealized_pnl(p) for p in positions), ZERO)


def isolated_equity(position: Position) -> Decimal:
    """`E_p = isolated margin + u_p`."""
    return position.isolated_margin + unrealized_pnl(position)


def liquidation_price(
    side: Side,
    contracts: Decimal,
    entry_price: Decimal,
    contract_size: Decimal,
    wallet: Decimal,
    tiers: Sequence[MaintenanceTier],
    other_maintenance: Decimal = ZERO,
    other_unrealized: Decimal = ZERO,
) -> Decimal | None:
    """Binance USDⓈ-M liquidation price of one one-way position.

    `LP = (WB - TMM1 + UPNL1 + cum - s*Q*EP) / (Q*MMR - s*Q)`, with `WB` the cross
    wallet balance (isolated: the position's margin) and `TMM1`/`UPNL1` the maintenance
    and unrealized PnL of the account's other cross positions. The tier depends on the
    notional at the liquidation price, so each tier is tried until one is consistent.
    Returns None when the position cannot be liquidated (fully collateralised short
    never is; a long with more margin than notional liquidates at no positive price).
    """
    quantity = contracts * contract_size
    if quantity <= ZERO:
        return None
    sign = Decimal(side.sign)
    brackets = tier_brackets(tiers)
    for index, bracket in enumerate(brackets):
        denominator = quantity * bracket.rate - sign * quantity
        if denominator == ZERO:
            continue
        numerator = (
            wallet
            - other_maintenance
            + other_unrealized
            + bracket.cum
            - sign * quantity * entry_price
        )
        price = numerator / denominator
        upper = brackets[index + 1].floor if index + 1 < len(brackets) else None
        at_price = quantity * price
        if at_price >= bracket.floor and (upper is None or at_price < upper):
            return price if price > ZERO else None
    return None


def round_down(amount: Decimal, step: Decimal) -> Decimal:
    """Largest multiple of `step` not above `amount` (for amounts that must not overshoot)."""
    if step <= ZERO:
        return amount
    # Decimal's `//` truncates toward zero; step down once more for negative remainders.
    units = amount // step
    if units * step > amount:
        units -= ONE
    return units * step


def round_up(amount: Decimal, step: Decimal) -> Decimal:
    """Smallest multiple of `step` not below `amount`."""
    if step <= ZERO:
        return amount
    units = amount // step
    if units * step < amount:
        units += ONE
    return units * step
