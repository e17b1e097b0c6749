"""`plan_backstops` and `reconcile_backstops`: the ladder of resting stops and its upkeep.

DESIGN.md §11, issue 10 §1. For every protected scope (the cross account with all its
cross legs, each watched isolated leg) the ladder's level 1 triggers where the scope,
every leg moving adversely together (`bot.domain.price_moves`), reaches the danger point:
`settings.margin_ratio`, or `settings.liquidation_buffer` short of liquidation. Its size
brings the scope back to its target at that price, fee- and slippage-aware, split across
the legs by notional like the planner. Level k+1 is computed from the scope as level k's
fill leaves it, so a crash that goes on after the first fill meets the next level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from bot.domain.leverage import cross_equity, isolated_equity, round_down, round_up, tier_brackets
from bot.domain.models import ONE, ZERO, AccountSnapshot, MarketRules, OrderSide, Position
from bot.domain.price_moves import MoveLeg, MoveScope, move_to_margin_ratio
from bot.domain.stops import BackstopSettings, Stop, StopOrder
from bot.domain.targets import Target, Targets

# A danger point closer than this relative move counts as "here": after an isolated fill
# the leg keeps its leverage (its margin is released pro rata), and rounding must not
# turn "the same price" into a level a hair further out.
_NO_MOVE = Decimal("1e-9")
# A size within this many steps of a step boundary is on it (see `_rounded`).
_STEP_NOISE = Decimal("1e-12")


@dataclass(frozen=True, slots=True)
class BackstopPlan:
    """The stops wanted resting, sorted by (symbol, side, level), and why some are not."""

    stops: tuple[Stop, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BackstopChanges:
    """What to do at the venue: place these, cancel those, leave the rest resting."""

    place: tuple[Stop, ...] = ()
    cancel: tuple[StopOrder, ...] = ()
    keep: tuple[StopOrder, ...] = ()


@dataclass(frozen=True, slots=True)
class _Leg:
    """A leg as the ladder leaves it: contracts left and the mark it was last priced at."""

    position: Position
    rules: MarketRules | None
    contracts: Decimal
    mark: Decimal
    actable: bool  # the bot may place stops on it (watched, with rules and a step)
    rate: Decimal | None  # constant maintenance rate when the market has no tiers

    @property
    def notional(self) -> Decimal:
        return self.contracts * self.position.contract_size * self.mark

    def move_leg(self) -> MoveLeg:
        tiers = self.rules.tiers if self.rules is not None else ()
        return MoveLeg(
            sign=self.position.side.sign,
            notional=self.notional,
            brackets=tier_brackets(tiers) if tiers else (),
            rate=None if tiers else self.rate,
        )


@dataclass(frozen=True, slots=True)
class _Scope:
    name: str
    target: Target
    isolated: bool
    equity: Decimal
    legs: tuple[_Leg, ...]

    def moves(self) -> MoveScope:
        return MoveScope(self.equity, tuple(leg.move_leg() for leg in self.legs))


def plan_backstops(
    snapshot: AccountSnapshot, targets: Targets, settings: BackstopSettings, slippage: Decimal
) -> BackstopPlan:
    """The ladder of reduce-only stops every protected scope should have resting."""
    if not settings.enabled:
        return BackstopPlan()
    notes: list[str] = []
    scopes: list[_Scope] = []
    cross = _cross_scope(snapshot, targets, notes)
    if cross is not None:
        scopes.append(cross)
    scopes += _isolated_scopes(snapshot, targets, notes)
    stops: list[Stop] = []
    for scope in scopes:
        stops += _ladder(scope, settings, slippage, notes)
    stops.sort(key=lambda s: (s.symbol, s.position_side.value, s.level))
    return BackstopPlan(tuple(stops), tuple(notes))


# -- scopes ------------------------------------------------------------------------------


def _leg(snapshot: AccountSnapshot, position: Position, notes: list[str]) -> _Leg | None:
    """The leg, or None (with a note) when it cannot be priced or its margin is unknown."""
    if not position.priced or position.contracts <= ZERO:
        notes.append(f"backstop: {position.key} has no usable mark price; not protected")
        return None
    mark = position.mark_price
    assert mark is not None
    rules = snapshot.markets.get(position.symbol)
    rate = None
    if position.maintenance_margin is not None:
        rate = position.maintenance_margin / (position.contracts * position.contract_size * mark)
    if (rules is None or not rules.tiers) and rate is None:
        notes.append(f"backstop: {position.key} has no maintenance tiers or figure")
        return None
    actable = snapshot.is_watched(position)
    if actable and (rules is None or rules.amount_step is None or rules.amount_step <= ZERO):
        notes.append(f"backstop: {position.key} has no market rules or amount step; no stop")
        actable = False
    return _Leg(position, rules, position.contracts, mark, actable, rate)


def _cross_scope(snapshot: AccountSnapshot, targets: Targets, notes: list[str]) -> _Scope | None:
    positions = snapshot.cross_positions()
    if not positions:
        return None
    legs = [_leg(snapshot, p, notes) for p in sorted(positions, key=lambda p: p.key)]
    if any(leg is None for leg in legs):
        notes.append(f"backstop: {snapshot.account} cross account skipped (a leg is unpriced)")
        return None
    equity = (
        snapshot.pooled_equity
        if snapshot.pooled_equity is not None
        else cross_equity(snapshot.derivatives.total, positions)
    )
    return _Scope(
        snapshot.account, targets.account, False, equity, tuple(x for x in legs if x is not None)
    )


def _isolated_scopes(snapshot: AccountSnapshot, targets: Targets, notes: list[str]) -> list[_Scope]:
    scopes = []
    for position in sorted(snapshot.isolated_positions(), key=lambda p: p.key):
        if not snapshot.is_watched(position):
            continue  # an unwatched isolated leg is not the bot's to protect
        leg = _leg(snapshot, position, notes)
        if leg is None:
            continue
        name = f"{snapshot.account}/{position.key}"
        target = targets.for_symbol(position.symbol)
        scopes.append(_Scope(name, target, True, isolated_equity(position), (leg,)))
    return scopes


# -- the ladder --------------------------------------------------------------------------


def _ladder(
    scope: _Scope, settings: BackstopSettings, slippage: Decimal, notes: list[str]
) -> list[Stop]:
    stops: list[Stop] = []
    for level in range(1, settings.levels + 1):
        if not any(leg.actable for leg in scope.legs):
            if level == 1:
                notes.append(f"backstop: {scope.name} has no leg the bot may trade")
            break
        d = _danger_move(scope, settings)
        if d is None:
            notes.append(
                f"backstop: {scope.name} reaches no danger point at a positive price"
                + ("" if level == 1 else f" after level {level - 1}")
            )
            break
        if d <= _NO_MOVE:
            notes.append(
                f"backstop: {scope.name} is already past the danger point; the planner's "
                "emergency acts"
                if level == 1
                else f"backstop: {scope.name} has no further danger point after level {level - 1}"
            )
            break
        at_trigger = _moved(scope, d)
        amounts = _amounts(at_trigger, settings, slippage, notes)
        if not amounts:
            break
        if scope.isolated and _stranded(at_trigger, amounts, settings, slippage):
            # The venue releases isolated margin pro rata, so the rest would keep this
            # very liquidation price and no further level could sit before it.
            notes.append(
                f"backstop: {scope.name} level {level} takes the whole leg: what an isolated "
                "cut leaves keeps its liquidation price"
            )
            amounts = [leg.contracts if leg.actable else ZERO for leg in at_trigger.legs]
        elif level == settings.levels and settings.close_last:
            # A dead daemon places no further level: what the last one left would meet
            # liquidation unguarded, so the last level closes it (the bot, alive,
            # re-places the whole ladder from the new position after any fill).
            amounts = [leg.contracts if leg.actable else ZERO for leg in at_trigger.legs]
        for leg, amount in zip(at_trigger.legs, amounts, strict=True):
            if amount > ZERO:
                stops.append(
                    Stop(
                        scope=scope.name,
                        level=level,
                        symbol=leg.position.symbol,
                        position_side=leg.position.side,
                        amount=amount,
                        trigger_price=leg.mark,
                        hedged=leg.position.hedged,
                    )
                )
        scope = _filled(at_trigger, amounts, slippage)
    return stops


def _stranded(
    scope: _Scope, amounts: Sequence[Decimal], settings: BackstopSettings, slippage: Decimal
) -> bool:
    """Whether what the fill leaves has no further danger point (it is already there)."""
    after = _filled(scope, amounts, slippage)
    if not after.legs:
        return False
    d = _danger_move(after, settings)
    return d is not None and d <= _NO_MOVE


def _danger_move(scope: _Scope, settings: BackstopSettings) -> Decimal | None:
    """The adverse move to the danger point (<= 0: there already; None: never)."""
    moves = scope.moves()
    buffer = settings.liquidation_buffer
    if buffer is None:
        return move_to_margin_ratio(moves, settings.margin_ratio)
    liquidation = move_to_margin_ratio(moves, ONE)
    if liquidation is None:
        return None
    # The mark t = m(1 - s*d) is `buffer` of itself short of the liquidation mark when
    # (dL - d) / (1 - s*d) = buffer, so d = (dL - buffer) / (1 - s*buffer); the nearest
    # leg (the smallest d) decides.
    return min((liquidation - buffer) / (ONE - leg.sign * buffer) for leg in moves.legs)


def _moved(scope: _Scope, d: Decimal) -> _Scope:
    """The scope with every leg moved adversely by `d` (its marks are the triggers)."""
    # Built directly, not with `dataclasses.replace`: this runs on every level of every
    # ladder, and replace's generic path costs more than the arithmetic.
    legs = tuple(
        _Leg(
            leg.position,
            leg.rules,
            leg.contracts,
            leg.mark * (ONE - leg.position.side.sign * d),
            leg.actable,
            leg.rate,
        )
        for leg in scope.legs
    )
    equity = scope.equity - sum((x.notional for x in scope.legs), ZERO) * d
    return _Scope(scope.name, scope.target, scope.isolated, equity, legs)


def _amounts(
    scope: _Scope, settings: BackstopSettings, slippage: Decimal, notes: list[str]
) -> list[Decimal]:
    """Contracts to cut on each leg at the trigger (empty: nothing to cut, with a note)."""
    actable = [leg for leg in scope.legs if leg.actable]
    amounts = []
    if settings.fraction is not None:
        fraction = settings.fraction
        wanted = [leg.contracts * fraction if leg.actable else ZERO for leg in scope.legs]
    else:
        total = sum((leg.notional for leg in actable), ZERO)
        fee = sum((leg.notional * _rules(leg).taker_fee for leg in actable), ZERO) / total
        target = scope.target.leverage
        denominator = ONE - target * (fee + slippage)
        gross = sum((leg.notional for leg in scope.legs), ZERO)
        if denominator <= ZERO or gross <= target * scope.equity:
            notes.append(
                f"backstop: {scope.name} is at or below its target at its danger point "
                "(or the fee is too high for the target); no stop"
            )
            return []
        # Cutting dN costs (fee + slippage) * dN of equity: dN = (N' - T*E') / (1 - T*(f+s)).
        cut = min((gross - target * scope.equity) / denominator, total)
        # Split by notional: each actable leg gives the same share of its contracts. As
        # a share (not notional back to contracts through the mark), a cut of everything
        # is exactly every contract: 28-digit division put it a hair under, which the
        # step rounded a whole step down, by the mark's last digits.
        share = cut / total
        wanted = [leg.contracts * share if leg.actable else ZERO for leg in scope.legs]
    for leg, contracts in zip(scope.legs, wanted, strict=True):
        amounts.append(_rounded(leg, contracts, slippage) if contracts > ZERO else ZERO)
    if not any(amounts):
        notes.append(f"backstop: {scope.name} has nothing to cut")
        return []
    return amounts


def _rules(leg: _Leg) -> MarketRules:
    assert leg.rules is not None  # actable legs have rules
    return leg.rules


def _rounded(leg: _Leg, contracts: Decimal, slippage: Decimal) -> Decimal:
    """Down to the step, never above the leg; under the market minimum (sized for the
    fill, which slippage moves against us) up to it, or the whole leg when it is less."""
    rules = _rules(leg)
    step = rules.amount_step
    assert step is not None
    # 28-digit arithmetic lands a size that is a whole number of steps a few units of
    # its last digit either side, by the mark's last digits: that is noise, not a step
    # more or less (a level re-planned at each mark flipped a step back and forth).
    noise = step * _STEP_NOISE
    amount = min(round_down(contracts + noise, step), leg.contracts)
    worst_unit = leg.position.contract_size * leg.mark * (ONE - slippage)
    minimum = max(rules.min_amount, round_up(rules.min_cost / worst_unit - noise, step), step)
    if amount < minimum:
        amount = minimum if minimum <= leg.contracts else leg.contracts
    return amount


def _filled(scope: _Scope, amounts: Sequence[Decimal], slippage: Decimal) -> _Scope:
    """The scope as the venue leaves it after the stops fill at the trigger marks.

    A fill lands at the trigger moved by the slippage and pays the taker fee. Cross: the
    realized PnL and the cost go to the wallet, so the equity drops by the cost. Isolated:
    the venue releases the margin pro rata to the wallet (and charges the fee there), so
    the leg keeps `(1 - cut/contracts)` of its equity; nobody re-pledges it while the
    daemon is dead, which is the case a ladder is for.
    """
    equity = scope.equity
    legs = []
    for leg, amount in zip(scope.legs, amounts, strict=True):
        if amount > ZERO:
            unit = leg.position.contract_size * leg.mark
            if scope.isolated:
                equity = equity * (leg.contracts - amount) / leg.contracts
            else:
                fill = unit * (ONE - slippage)
                equity -= amount * (unit * slippage + _rules(leg).taker_fee * fill)
        if leg.contracts - amount > ZERO:
            left = leg.contracts - amount
            legs.append(_Leg(leg.position, leg.rules, left, leg.mark, leg.actable, leg.rate))
    return _Scope(scope.name, scope.target, scope.isolated, equity, tuple(legs))


# -- reconciliation ----------------------------------------------------------------------


def reconcile_backstops(
    desired: Sequence[Stop], resting: Sequence[StopOrder], settings: BackstopSettings
) -> BackstopChanges:
    """Pair the wanted ladder with what rests at the venue, per (symbol, closing side).

    Wanted stops in level order meet resting ones nearest-the-mark first (highest trigger
    for a sell, lowest for a buy). A pair is kept when its trigger is within
    `reprice_tolerance` of the wanted one and its amount is the wanted one or smaller by
    at most that tolerance (never larger); otherwise the resting
    one is cancelled and the wanted one placed. Leftover resting stops (the position is
    gone or the ladder shorter) are cancelled; leftover wanted ones are placed. Stops
    that are not resting any more (triggered, cancelled) are not this function's.
    """
    groups: dict[tuple[str, OrderSide], tuple[list[Stop], list[StopOrder]]] = {}
    for want in desired:
        groups.setdefault((want.symbol, want.order_side), ([], []))[0].append(want)
    for held in resting:
        if held.resting:
            groups.setdefault((held.symbol, held.side), ([], []))[1].append(held)
    place: list[Stop] = []
    cancel: list[StopOrder] = []
    keep: list[StopOrder] = []
    for (_, side), (wanted, orders) in sorted(groups.items()):
        wanted.sort(key=lambda s: s.level)
        orders.sort(key=lambda o: -o.trigger_price if side is OrderSide.SELL else o.trigger_price)
        for index in range(max(len(wanted), len(orders))):
            stop = wanted[index] if index < len(wanted) else None
            order = orders[index] if index < len(orders) else None
            if stop is not None and order is not None and _matches(stop, order, settings):
                keep.append(order)
                continue
            if order is not None:
                cancel.append(order)
            if stop is not None:
                place.append(stop)
    return BackstopChanges(tuple(place), tuple(cancel), tuple(keep))


def _matches(stop: Stop, order: StopOrder, settings: BackstopSettings) -> bool:
    """Kept when the trigger moved within the tolerance and the resting amount is the
    wanted one or a little SMALLER (within the tolerance): a ladder re-planned at a new
    mark can round a level one step either way, and re-placing it for that churned
    cancel-replace every few cycles. A resting stop larger than wanted is never kept."""
    moved = abs(order.trigger_price - stop.trigger_price) / stop.trigger_price
    if moved > settings.reprice_tolerance or order.amount > stop.amount:
        return False
    return (stop.amount - order.amount) / stop.amount <= settings.reprice_tolerance
