"""`stream_triggers`: the marks at which a scope leaves its band, for the streaming trigger.

DESIGN.md §11 layer 2. From a snapshot, per symbol, the nearest mark below and above the
current one at which any scope holding that symbol leaves its band (leverage above its
max; below its min only when the policy would act on it) or reaches its emergency
margin ratio. The stream runs the account's cycle when a mark crosses one. The move
model is `bot.domain.price_moves`: every leg of the scope moves adversely together
(conservative: the trigger comes early, never late). A scope already outside its band
triggers at the current mark itself, so the first streamed mark runs the cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from bot.domain.leverage import cross_equity, isolated_equity, tier_brackets
from bot.domain.models import ZERO, AccountSnapshot, Position
from bot.domain.price_moves import MoveLeg, MoveScope, move_to_leverage, move_to_margin_ratio
from bot.domain.targets import Policy, Target, Targets


@dataclass(frozen=True, slots=True)
class MarkTrigger:
    """The nearest marks of `symbol` below and above its current mark that need a cycle."""

    symbol: str
    below: Decimal | None
    above: Decimal | None
    reason_below: str = ""
    reason_above: str = ""


def crossed(trigger: MarkTrigger, mark: Decimal) -> str | None:
    """Why `mark` needs a cycle now (it is at or past a trigger), or None."""
    if trigger.below is not None and mark <= trigger.below:
        return trigger.reason_below
    if trigger.above is not None and mark >= trigger.above:
        return trigger.reason_above
    return None


@dataclass(frozen=True, slots=True)
class _Scope:
    target: Target
    equity: Decimal
    positions: tuple[Position, ...]  # all move the equity
    counted: frozenset[str]  # symbols in the leverage and the ratio


def stream_triggers(
    snapshot: AccountSnapshot, targets: Targets, policy: Policy
) -> dict[str, MarkTrigger]:
    """Per watched, priced symbol: the nearest trigger on each side over its scopes."""
    relever = policy.release_excess or policy.allow_increase
    found: dict[str, MarkTrigger] = {}
    for scope in _scopes(snapshot, targets):
        moves = _moves(snapshot, scope)
        for event in _events(moves, scope.target, relever):
            for position in scope.positions:
                if position.symbol in scope.counted and snapshot.is_watched(position):
                    _record(found, position, moves, event)
    return found


def _scopes(snapshot: AccountSnapshot, targets: Targets) -> list[_Scope]:
    scopes: list[_Scope] = []
    cross = snapshot.cross_positions()
    if cross and all(p.priced for p in cross):
        equity = (
            snapshot.pooled_equity
            if snapshot.pooled_equity is not None
            else cross_equity(snapshot.derivatives.total, cross)
        )
        everything = frozenset(p.symbol for p in cross)
        scopes.append(_Scope(targets.account, equity, cross, everything))
        # A per-symbol override bounds that symbol's notional over the shared equity.
        for symbol in sorted(everything & targets.symbols.keys()):
            scopes.append(_Scope(targets.symbols[symbol], equity, cross, frozenset({symbol})))
    for position in snapshot.isolated_positions():
        if position.priced and snapshot.is_watched(position):
            target = targets.for_symbol(position.symbol)
            scopes.append(
                _Scope(
                    target,
                    isolated_equity(position),
                    (position,),
                    frozenset({position.symbol}),
                )
            )
    return scopes


def _moves(snapshot: AccountSnapshot, scope: _Scope) -> MoveScope:
    legs = []
    for p in scope.positions:
        assert p.mark_price is not None
        n = abs(p.contracts * p.contract_size * p.mark_price)
        rules = snapshot.markets.get(p.symbol)
        tiers = rules.tiers if rules is not None else ()
        rate = None
        if not tiers and p.maintenance_margin is not None and n > ZERO:
            rate = p.maintenance_margin / n
        legs.append(
            MoveLeg(
                sign=p.side.sign,
                notional=n,
                brackets=tier_brackets(tiers) if tiers else (),
                rate=rate,
                counted=p.symbol in scope.counted,
            )
        )
    return MoveScope(scope.equity, tuple(legs))


# A move at which a scope needs a cycle: its size (0 = now), its rule, and whether the
# rule is an adverse one (leverage up, margin ratio up) or a favourable one (leverage down).
_Event = tuple[Decimal, str, bool]


def _events(moves: MoveScope, target: Target, relever: bool) -> list[_Event]:
    """The moves at which the scope leaves its band or reaches its emergency ratio."""
    events: list[_Event] = []
    too_high = f"leverage > max {target.max}"
    leverage = moves.leverage_at(ZERO)
    if leverage is None or leverage > target.max:
        events.append((ZERO, too_high, True))
    else:
        up = move_to_leverage(moves, target.max)
        if up is not None:
            events.append((up, too_high, True))
        if relever:
            too_low = f"leverage < min {target.min}"
            down = ZERO if leverage < target.min else move_to_leverage(moves, target.min)
            if down is not None:
                events.append((down, too_low, False))
    ratio = target.emergency_margin_ratio
    emergency = move_to_margin_ratio(moves, ratio)
    if emergency is not None:
        events.append((emergency, f"margin ratio >= {ratio}", True))
    return events


def _record(
    found: dict[str, MarkTrigger], position: Position, moves: MoveScope, event: _Event
) -> None:
    """Keep the trigger if it is the nearest on its side of this symbol's mark."""
    d, rule, adverse = event
    mark = position.mark_price
    assert mark is not None
    long = position.side.sign > 0
    price = mark * (1 - position.side.sign * d)
    if price <= ZERO:
        return
    # An adverse move takes a long down and a short up; a trigger "now" (d = 0) sits on
    # the side its rule's move would come from.
    below = (d > ZERO) == long if d != ZERO else adverse == long
    reason = f"{_figure(moves, d, rule)} at mark {price}"
    current = found.get(position.symbol, MarkTrigger(position.symbol, None, None))
    if below and (current.below is None or price > current.below):
        current = MarkTrigger(position.symbol, price, current.above, reason, current.reason_above)
    elif not below and (current.above is None or price < current.above):
        current = MarkTrigger(position.symbol, current.below, price, current.reason_below, reason)
    found[position.symbol] = current


def _figure(moves: MoveScope, d: Decimal, rule: str) -> str:
    """`leverage 12.00 > max 12` / `margin ratio 0.800 >= 0.8`: the figure at the move."""
    if rule.startswith("margin ratio"):
        ratio = moves.margin_ratio_at(d)
        return rule if ratio is None else f"margin ratio {ratio:.3f}{rule[len('margin ratio') :]}"
    leverage = moves.leverage_at(d)
    return rule if leverage is None else f"leverage {leverage:.2f}{rule[len('leverage') :]}"
