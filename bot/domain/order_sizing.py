"""Order steps of the planner: reduce-only orders to de-lever, increases to re-lever.

The wanted notional change accounts for the taker fee and the slippage allowance; it
is shared across the scope's positions by notional, and each order's amount is
rounded to precision, chunked by policy and checked against the market minimums.
"""

from __future__ import annotations

from decimal import Decimal

from bot.domain.actions import Order, Rule
from bot.domain.collateral import repledge_released_margin
from bot.domain.leverage import notional, round_down, round_up
from bot.domain.models import ZERO, MarketRules, Position
from bot.domain.planning_state import PlanContext, Scope, ScopeState, reason_for
from bot.domain.targets import Policy


def _actable(ctx: PlanContext, scope: Scope, work: ScopeState) -> tuple[Position, ...]:
    """The scope's legs the bot may trade (`symbols`); says so when there are none.

    The unwatched legs still count in the scope's notional and equity (a cross account's
    legs share its collateral), but no order is planned on them.
    """
    legs = tuple(p for p in scope.positions if ctx.snapshot.is_watched(p))
    if not legs:
        work.notes.append(
            "orders: only legs outside `symbols` could change this scope; none is traded"
        )
    return legs


def _cost_rate(ctx: PlanContext, legs: tuple[Position, ...]) -> Decimal:
    """Equity lost per unit of notional traded: the weighted taker fee plus slippage."""
    total = ZERO
    weighted = ZERO
    for p in legs:
        n = notional(p)
        total += n
        weighted += n * ctx.snapshot.markets[p.symbol].taker_fee
    fee_rate = weighted / total if total > ZERO else ZERO
    return fee_rate + ctx.policy.slippage_allowance


def _in_cooldown(ctx: PlanContext, scope: Scope, work: ScopeState) -> bool:
    last = ctx.activity.last_order_at.get(scope.name)
    cooldown = ctx.policy.cooldown
    if last is not None and ctx.now - last < cooldown:
        work.notes.append(f"orders wait for cooldown until {(last + cooldown).isoformat()}")
        return True
    return False


def reduce_exposure(ctx: PlanContext, scope: Scope, work: ScopeState, rule: Rule) -> None:
    """Plan reduce-only orders that bring the scope's leverage down to its target."""
    snapshot, policy = ctx.snapshot, ctx.policy
    emergency = rule is Rule.EMERGENCY
    if scope.isolated is not None and not snapshot.can_adjust_margin and not emergency:
        # The reduce releases margin pro rata; without re-pledging it the leverage stays
        # where it is, and every cycle would cut the position again.
        work.notes.append(
            "orders: reducing an isolated position that cannot take its margin back "
            "leaves its leverage unchanged"
        )
        return
    if not emergency and _in_cooldown(ctx, scope, work):
        return
    legs = _actable(ctx, scope, work)
    if not legs:
        return
    target = scope.target.leverage
    cost = _cost_rate(ctx, legs)
    denominator = Decimal(1) - target * cost
    if denominator <= ZERO:
        work.notes.append("orders: fee too high for this target")
        return
    # Reducing notional by dN costs (f + slippage) * dN of equity:
    # dN = (N - T * E') / (1 - T * (f + s)).
    # Shared by notional across the legs that may be traded (all of them, unless
    # `symbols` leaves some out), never more than those legs hold.
    total = (
        sum((notional(p) for p in legs), ZERO) if len(legs) < len(scope.positions) else work.gross
    )
    wanted = min((work.gross - target * work.equity) / denominator, total)
    before = work.checkpoint()
    skipped: list[tuple[Position, Decimal, Decimal]] = []
    for position in sorted(legs, key=lambda p: p.key):
        share = wanted * notional(position) / total
        rules = snapshot.markets[position.symbol]
        amount, minimum = _order_amount(position, rules, share, policy, emergency, work)
        if amount < minimum and emergency:
            # In an emergency, round up to the minimum, or close the position outright.
            amount = min(minimum, position.contracts)
        elif amount < minimum:
            skipped.append((position, amount, minimum))
            continue
        _reduce(ctx, scope, work, rule, before, position, amount, "reduce-only order")
    # The band comes first: when legs under the minimum would leave the scope above its
    # band, the largest ones are rounded up to the minimum (or closed if smaller).
    # The chunk limit still holds: a minimum above `max_order_notional` stays skipped.
    for position, amount, minimum in sorted(skipped, key=lambda s: -notional(s[0])):
        rounded = min(minimum, position.contracts)
        if work.gross > scope.target.max * work.equity and _within_chunk(position, rounded, policy):
            work.notes.append(
                f"{_under_minimum(position, amount, minimum)}; rounded up to {rounded}, "
                f"or leverage stays above {scope.target.max}"
            )
            _reduce(
                ctx,
                scope,
                work,
                rule,
                before,
                position,
                rounded,
                "reduce-only order, rounded up to the market minimum",
            )
        else:
            work.notes.append(f"{_under_minimum(position, amount, minimum)}; skipped")


def _under_minimum(position: Position, amount: Decimal, minimum: Decimal) -> str:
    return f"{position.key}: {amount} contracts is below the market minimum {minimum}"


def _within_chunk(position: Position, amount: Decimal, policy: Policy) -> bool:
    limit = policy.max_order_notional
    return limit is None or notional(position) * amount / position.contracts <= limit


def _reduce(
    ctx: PlanContext,
    scope: Scope,
    work: ScopeState,
    rule: Rule,
    before: ScopeState,
    position: Position,
    amount: Decimal,
    detail: str,
) -> None:
    """Add one reduce-only order to the plan and account for it in `work`."""
    rules = ctx.snapshot.markets[position.symbol]
    price = position.mark_price
    assert price is not None
    reduced = amount * position.contract_size * price
    # The fee is charged on the fill price, which slippage moves against us.
    slippage = ctx.policy.slippage_allowance
    fee_paid = reduced * (rules.taker_fee * (1 + slippage) + slippage)
    work.gross -= reduced
    work.equity -= fee_paid
    work.actions.append(
        Order(
            symbol=position.symbol,
            position_side=position.side,
            amount=amount,
            reduce_only=True,
            expected_price=price,
            notional=reduced,
            reason=reason_for(scope, rule, before, work, detail),
            hedged=position.hedged,
        )
    )
    if scope.isolated is not None:
        repledge_released_margin(ctx, scope, work, rule, position, amount, fee_paid)


def _order_amount(
    position: Position,
    rules: MarketRules,
    notional_share: Decimal,
    policy: Policy,
    emergency: bool,
    work: ScopeState,
    *,
    reduce: bool = True,
) -> tuple[Decimal, Decimal]:
    """Contracts for one order (rounded down to precision, chunked) and the market minimum.

    An amount under the minimum is the caller's to skip or round up.
    """
    step = rules.amount_step
    price = position.mark_price
    assert step is not None and price is not None
    unit = position.contract_size * price
    amount = round_down(notional_share / unit, step)
    if reduce:
        amount = min(amount, position.contracts)
    if not emergency and policy.max_order_notional is not None:
        chunk = round_down(policy.max_order_notional / unit, step)
        if amount > chunk:
            work.notes.append(
                f"{position.key}: chunked to {chunk} of {amount} contracts; "
                "the rest follows after the cooldown"
            )
            amount = chunk
    # Minimum cost is checked on the fill, and a market order fills up to the slippage
    # allowance below the mark: size the minimum for that price, not the mark.
    worst_unit = unit * (1 - policy.slippage_allowance)
    minimum = max(rules.min_amount, round_up(rules.min_cost / worst_unit, step), step)
    return amount, minimum


def increase_exposure(ctx: PlanContext, scope: Scope, work: ScopeState, rule: Rule) -> None:
    """Plan orders that raise the scope's leverage up to its target (when allowed)."""
    if _in_cooldown(ctx, scope, work):
        return
    legs = _actable(ctx, scope, work)
    if not legs:
        return
    snapshot, policy = ctx.snapshot, ctx.policy
    target = scope.target.leverage
    cost = _cost_rate(ctx, legs)
    # Adding dN of notional costs (f + s) * dN: dN = (T * E - N) / (1 + T * (f + s)).
    wanted = (target * work.equity - work.gross) / (Decimal(1) + target * cost)
    before = work.checkpoint()
    total = (
        sum((notional(p) for p in legs), ZERO) if len(legs) < len(scope.positions) else work.gross
    )
    for position in sorted(legs, key=lambda p: p.key):
        share = wanted * notional(position) / total
        rules = snapshot.markets[position.symbol]
        amount, minimum = _order_amount(position, rules, share, policy, False, work, reduce=False)
        if amount < minimum:
            work.notes.append(f"{_under_minimum(position, amount, minimum)}; skipped")
            continue
        price = position.mark_price
        assert price is not None
        added = amount * position.contract_size * price
        work.gross += added
        work.equity -= added * (rules.taker_fee + policy.slippage_allowance)
        work.actions.append(
            Order(
                symbol=position.symbol,
                position_side=position.side,
                amount=amount,
                reduce_only=False,
                expected_price=price,
                notional=added,
                reason=reason_for(scope, rule, before, work, "increase exposure (allowed)"),
                hedged=position.hedged,
            )
        )
