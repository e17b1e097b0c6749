"""A scope under one common price move: where it leaves its band or reaches a margin ratio.

The backstop and the streaming trigger both ask "at which mark does this scope reach X?".
Both answer it with one conservative model (issue 10: "per position, conservatively,
assuming the others move with it"): every leg of the scope moves ADVERSELY by the same
relative amount `d`, mark `m_i -> m_i * (1 - s_i * d)` (`s` = +1 long, -1 short).
Then, with `n_i` the notionals and `N0 = sum n_i` at the current marks:

- equity is linear: `E(d) = E0 - N0 * d` (every leg loses `n_i * d`);
- each notional is linear: `n_i(d) = n_i * (1 - s_i * d)`;
- each maintenance margin is linear inside one tier: `n_i(d) * mmr - cum`.

So every threshold is a linear equation per tier assignment, solved exactly on `Decimal`
(no bisection): leverage needs no tiers at all, and the margin ratio walks the tier
breakpoints in order of `d` (at most a few dozen) and solves the segment holding the
root. A negative `d` is a favourable move (leverage falls).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from bot.domain.leverage import TierBracket, bracket_for
from bot.domain.models import ONE, ZERO


@dataclass(frozen=True, slots=True)
class MoveLeg:
    """One leg: its side's sign, its notional at the current mark, its maintenance model.

    Maintenance comes from `brackets` (the market's tiers) when there are any, else from
    the constant `rate` (the venue's reported figure over the notional); None: unknown.
    A leg not `counted` moves the equity but is not in the leverage or margin ratio (a
    per-symbol cross override counts its symbol against the whole account's equity).
    """

    sign: int
    notional: Decimal
    brackets: tuple[TierBracket, ...] = ()
    rate: Decimal | None = None
    counted: bool = True

    def notional_at(self, d: Decimal) -> Decimal:
        return self.notional * (ONE - self.sign * d)

    def maintenance_at(self, d: Decimal) -> Decimal | None:
        n = self.notional_at(d)
        if self.brackets:
            bracket = bracket_for(self.brackets, n)
            return n * bracket.rate - bracket.cum
        return None if self.rate is None else n * self.rate

    def price_at(self, mark: Decimal, d: Decimal) -> Decimal:
        """The mark after the move `d` (adverse for this leg when `d > 0`)."""
        return mark * (ONE - self.sign * d)


@dataclass(frozen=True, slots=True)
class MoveScope:
    """A scope's equity at the current marks and its legs."""

    equity: Decimal
    legs: tuple[MoveLeg, ...]

    @property
    def gross(self) -> Decimal:
        """Every leg's notional: what one unit of adverse move costs the equity."""
        return sum((leg.notional for leg in self.legs), ZERO)

    @property
    def maintenance_known(self) -> bool:
        return all(leg.brackets or leg.rate is not None for leg in self.legs if leg.counted)

    def equity_at(self, d: Decimal) -> Decimal:
        return self.equity - self.gross * d

    def notional_at(self, d: Decimal) -> Decimal:
        return sum((leg.notional_at(d) for leg in self.legs if leg.counted), ZERO)

    def maintenance_at(self, d: Decimal) -> Decimal | None:
        total = ZERO
        for leg in self.legs:
            if leg.counted:
                mm = leg.maintenance_at(d)
                if mm is None:
                    return None
                total += mm
        return total

    def leverage_at(self, d: Decimal) -> Decimal | None:
        equity = self.equity_at(d)
        return None if equity <= ZERO else self.notional_at(d) / equity

    def margin_ratio_at(self, d: Decimal) -> Decimal | None:
        equity = self.equity_at(d)
        mm = self.maintenance_at(d)
        return None if equity <= ZERO or mm is None else mm / equity

    def adverse_limit(self) -> Decimal | None:
        """The largest adverse move with every mark positive (a long's price reaches 0
        at `d = 1`); None when only shorts, whose prices can rise without bound."""
        return ONE if any(leg.sign > 0 for leg in self.legs) else None

    def favourable_limit(self) -> Decimal | None:
        """The most negative move with every mark positive (a short's at `d = -1`)."""
        return -ONE if any(leg.sign < 0 for leg in self.legs) else None

    def solvency_limit(self) -> Decimal | None:
        """The adverse move that takes the equity to zero (None: no exposure)."""
        gross = self.gross
        return None if gross <= ZERO else self.equity / gross


def move_to_leverage(scope: MoveScope, leverage: Decimal) -> Decimal | None:
    """The move `d` where `N(d) = leverage * E(d)` with positive equity and prices.

    `N0 - S*d = L*(E0 - N0*d)` with `S = sum(s_i * n_i)` gives
    `d = (L*E0 - N0) / (L*N0 - S)`. None when the scope never has that leverage at
    positive prices (or the equation is degenerate).
    """
    counted = sum((leg.notional for leg in scope.legs if leg.counted), ZERO)
    signed = sum((leg.sign * leg.notional for leg in scope.legs if leg.counted), ZERO)
    denominator = leverage * scope.gross - signed
    if denominator == ZERO or counted <= ZERO:
        return None
    d = (leverage * scope.equity - counted) / denominator
    if not _within_prices(scope, d):
        return None
    solvency = scope.solvency_limit()
    if solvency is not None and d >= solvency:
        return None
    return d


def _within_prices(scope: MoveScope, d: Decimal) -> bool:
    high, low = scope.adverse_limit(), scope.favourable_limit()
    return (high is None or d < high) and (low is None or d > low)


def move_to_margin_ratio(scope: MoveScope, ratio: Decimal) -> Decimal | None:
    """The smallest adverse move `d >= 0` where `sum MM_i(d) >= ratio * E(d)`.

    0 when the scope is there already; None when it never gets there at a positive
    price (a long carrying more equity than its notional) or its maintenance is unknown.
    `f(d) = MM(d) - ratio*E(d)` is continuous and linear between tier breakpoints (the
    tiers' `cum` keeps MM continuous), so the root is found on the first segment whose
    end has `f >= 0`, exactly, by the segment's own line.
    """
    if not scope.maintenance_known or scope.gross <= ZERO:
        return None
    upper = _adverse_upper(scope)
    start = ZERO
    f_start = _excess(scope, ratio, start)
    if f_start >= ZERO:
        return ZERO
    for end in (*_breakpoints(scope.legs, upper), upper):
        f_end = _excess(scope, ratio, end)
        if f_end >= ZERO:
            return start + (end - start) * (-f_start) / (f_end - f_start)
        start, f_start = end, f_end
    return None


def _adverse_upper(scope: MoveScope) -> Decimal:
    """Where to stop looking: zero equity (the ratio is infinite past it) or a zero price."""
    limits = [x for x in (scope.solvency_limit(), scope.adverse_limit()) if x is not None]
    return min(limits)


def _excess(scope: MoveScope, ratio: Decimal, d: Decimal) -> Decimal:
    mm = scope.maintenance_at(d)
    assert mm is not None  # checked by the caller: maintenance_known
    return mm - ratio * scope.equity_at(d)


def _breakpoints(legs: Sequence[MoveLeg], upper: Decimal) -> list[Decimal]:
    """Moves in `(0, upper)` where a counted leg's notional crosses a tier floor."""
    points: set[Decimal] = set()
    for leg in legs:
        if not leg.counted or leg.notional <= ZERO:
            continue
        for bracket in leg.brackets:
            if bracket.floor <= ZERO:
                continue
            # n * (1 - s*d) = floor  =>  d = s * (1 - floor / n)
            d = leg.sign * (ONE - bracket.floor / leg.notional)
            if ZERO < d < upper:
                points.add(d)
    return sorted(points)
