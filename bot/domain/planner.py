"""`plan_rebalance`: snapshot + targets + policy -> the actions that restore the band.

DESIGN.md §2–3. Leaving the band moves a scope back to its target `T`, not to the
band's edge. De-levering closes the gap with collateral and/or reduce-only orders in
the owner's preferred order; re-levering happens only when the owner allowed it.
The planner is pure: the clock and the journal's memory come in as arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from bot.domain.actions import Action, Order, Plan, RecentActivity, Rule, ScopeDecision
from bot.domain.collateral import add_collateral, release_collateral
from bot.domain.leverage import cross_equity, isolated_equity, notional, scope_metrics
from bot.domain.models import ZERO, AccountSnapshot, MarginMode, Position
from bot.domain.order_sizing import increase_exposure, reduce_exposure
from bot.domain.planning_state import Budget, PlanContext, Scope, ScopeState, leverage_of
from bot.domain.targets import Policy, Prefer, Target, Targets

# A collateral or order step: plans its actions into the scope's state.
Step = Callable[[PlanContext, Scope, ScopeState, Rule], None]

SOURCE_UNKNOWN_NOTE = "source wallet unreadable: waiting for a good read"
SOURCE_NOT_READ_NOTE = "source wallet not read yet: plan again with it"
# The rules whose de-levering may draw on the source wallet (re-levering only sends
# collateral to it, whatever it holds).
_SOURCE_RULES = frozenset({Rule.DELEVER, Rule.EMERGENCY})


def plan_rebalance(
    snapshot: AccountSnapshot,
    targets: Targets,
    policy: Policy,
    now: datetime,
    activity: RecentActivity | None = None,
) -> Plan:
    """Plan the actions that bring every scope of the account back to its target."""
    activity = activity or RecentActivity()
    problem = _untrusted(snapshot, policy, now)
    if problem is not None:
        return Plan(created_at=now, notes=(f"no action: {problem}",))

    budget = _initial_budget(snapshot, policy, activity)
    ctx = PlanContext(snapshot, policy, now, activity, budget)
    actions: list[Action] = []
    decisions: list[ScopeDecision] = []
    for scope_actions, decision in _plan_cross(ctx, targets):
        actions.extend(scope_actions)
        decisions.append(decision)
    for scope in _isolated_scopes(snapshot, targets):
        scope_actions, decision, _ = _plan_scope(ctx, scope)
        actions.extend(scope_actions)
        decisions.append(decision)
    return Plan(created_at=now, actions=tuple(actions), decisions=tuple(decisions))


def needs_source(snapshot: AccountSnapshot, plan: Plan) -> bool:
    """Whether `plan` was made without the source wallet it may draw on: the snapshot
    skipped it (`source_read` False) and a scope must de-lever. Read the source, then plan
    again: a plan made without it is never to be sent."""
    return not snapshot.source_read and any(d.rule in _SOURCE_RULES for d in plan.decisions)


def _untrusted(snapshot: AccountSnapshot, policy: Policy, now: datetime) -> str | None:
    age = now - snapshot.taken_at
    if age > policy.max_snapshot_age:
        return (
            f"snapshot is stale ({age.total_seconds():.0f}s old, "
            f"max {policy.max_snapshot_age.total_seconds():.0f}s)"
        )
    for position in snapshot.positions:
        if position.margin_mode is MarginMode.ISOLATED and not snapshot.is_watched(position):
            continue  # its own scope, never acted on: nothing is planned from it
        if not position.priced:
            return f"missing mark price for {position.symbol}"
        rules = snapshot.markets.get(position.symbol)
        if rules is None:
            return f"unknown market rules for {position.symbol}"
        if rules.amount_step is None or rules.amount_step <= ZERO:
            return f"unknown amount precision for {position.symbol}"
        if position.contracts <= ZERO:
            return f"position {position.key} has no contracts"
    return None


def _initial_budget(snapshot: AccountSnapshot, policy: Policy, activity: RecentActivity) -> Budget:
    source = ZERO
    if snapshot.source is not None:
        source = max(ZERO, snapshot.source.free - policy.source_floor)
    if policy.daily_transfer_cap is not None:
        cap_left = max(ZERO, policy.daily_transfer_cap - activity.transferred_today)
        source = min(source, cap_left)
    return Budget(source=source, derivatives_free=max(ZERO, snapshot.derivatives.free))


def _plan_cross(ctx: PlanContext, targets: Targets) -> list[tuple[list[Action], ScopeDecision]]:
    """The account scope, then each per-symbol override (it bounds that symbol's n / E).

    The cross scopes share one equity, so each starts from the equity and positions the
    scopes before it planned: a transfer or a cut is never counted twice.
    """
    snapshot = ctx.snapshot
    positions = snapshot.cross_positions()
    equity = (
        snapshot.pooled_equity
        if snapshot.pooled_equity is not None
        else cross_equity(snapshot.derivatives.total, positions)
    )
    overrides = sorted({p.symbol for p in positions if p.symbol in targets.symbols})
    bands: list[tuple[str, Target, str | None]] = [(snapshot.account, targets.account, None)]
    bands += [(f"{snapshot.account}/{s}", targets.symbols[s], s) for s in overrides]
    planned: list[tuple[list[Action], ScopeDecision]] = []
    for name, target, symbol in bands:
        legs = tuple(p for p in positions if symbol is None or p.symbol == symbol)
        if not legs:
            continue  # the scopes before closed this symbol outright
        scope = Scope(name, legs, equity, target, None)
        actions, decision, work = _plan_scope(ctx, scope)
        planned.append((actions, decision))
        positions, equity = _after_orders(positions, actions), work.equity
    if positions:
        # Isolated margin drawn from the derivatives wallet lowers the cross equity: only
        # what the cross scopes hold above their targets may go.
        surplus = min(
            equity
            - sum((notional(p) for p in positions if symbol in (None, p.symbol)), ZERO)
            / target.leverage
            for _, target, symbol in bands
        )
        ctx.budget.derivatives_free = min(ctx.budget.derivatives_free, max(ZERO, surplus))
    return planned


def _after_orders(positions: tuple[Position, ...], actions: list[Action]) -> tuple[Position, ...]:
    """The positions as the planned actions leave them.

    Any action moves the liquidation prices, so they are dropped; the exchange's
    maintenance figure is scaled with the size (tiers only make that an overestimate).
    """
    if not actions:
        return positions
    change: dict[tuple[str, str], Decimal] = {}
    for action in actions:
        if isinstance(action, Order):
            signed = -action.amount if action.reduce_only else action.amount
            key = (action.symbol, action.position_side.value)
            change[key] = change.get(key, ZERO) + signed
    after: list[Position] = []
    for p in positions:
        contracts = p.contracts + change.get((p.symbol, p.side.value), ZERO)
        if contracts <= ZERO:
            continue
        maintenance = p.maintenance_margin
        if maintenance is not None:
            maintenance = maintenance * contracts / p.contracts
        after.append(
            replace(p, contracts=contracts, maintenance_margin=maintenance, liquidation_price=None)
        )
    return tuple(after)


def _isolated_scopes(snapshot: AccountSnapshot, targets: Targets) -> list[Scope]:
    return [
        Scope(
            f"{snapshot.account}/{position.key}",
            (position,),
            isolated_equity(position),
            targets.for_symbol(position.symbol),
            position,
        )
        for position in sorted(snapshot.isolated_positions(), key=lambda p: p.key)
        # An isolated leg shares nothing with the others: unwatched, it is not planned.
        if snapshot.is_watched(position)
    ]


def _plan_scope(ctx: PlanContext, scope: Scope) -> tuple[list[Action], ScopeDecision, ScopeState]:
    target = scope.target
    metrics = scope_metrics(scope.equity, scope.positions, ctx.snapshot.markets)
    work = ScopeState(scope.equity, metrics.notional, [], [])
    rule: Rule | None = None

    if metrics.notional > ZERO:
        emergency = _emergency_reason(
            metrics.insolvent, metrics.margin_ratio, metrics.liquidation_distance, target
        )
        if emergency is not None:
            rule = Rule.EMERGENCY
            work.notes.append(emergency)
        elif metrics.leverage is not None and metrics.leverage > target.max:
            rule = Rule.DELEVER
        elif metrics.leverage is not None and metrics.leverage < target.min:
            rule = Rule.RELEVER

    if rule in (Rule.DELEVER, Rule.EMERGENCY):
        assert rule is not None
        _delever(ctx, scope, work, rule)
    elif rule is Rule.RELEVER:
        _relever(ctx, scope, work)

    decision = ScopeDecision(
        scope=scope.name,
        leverage=metrics.leverage,
        margin_ratio=metrics.margin_ratio,
        target=target.leverage,
        band=(target.min, target.max),
        rule=rule,
        expected_leverage=leverage_of(work.gross, work.equity),
        notes=tuple(work.notes),
    )
    return work.actions, decision, work


def _emergency_reason(
    insolvent: bool,
    margin_ratio: Decimal | None,
    distance: Decimal | None,
    target: Target,
) -> str | None:
    if insolvent:
        return "equity is not positive"
    if margin_ratio is not None and margin_ratio >= target.emergency_margin_ratio:
        return f"margin ratio {margin_ratio:.3f} >= {target.emergency_margin_ratio}"
    threshold = target.emergency_liquidation_distance
    if threshold is not None and distance is not None and distance < threshold:
        return f"liquidation {distance:.2%} away < {threshold:.2%}"
    return None


def _above_target(work: ScopeState, target: Target) -> bool:
    return work.gross > target.leverage * work.equity


def _preferred_order(policy: Policy, collateral: Step | None, orders: Step | None) -> list[Step]:
    """The collateral and order steps in the owner's preferred order; None means skip it."""
    steps = (orders, collateral) if policy.prefer is Prefer.ORDERS else (collateral, orders)
    return [step for step in steps if step is not None]


def _delever(ctx: PlanContext, scope: Scope, work: ScopeState, rule: Rule) -> None:
    if rule is Rule.EMERGENCY and not _above_target(work, scope.target):
        work.notes.append("emergency, but the scope is already at or below its target")
        return
    if not ctx.snapshot.source_read:
        # Not read is not "none": collateral may close the gap (see `needs_source`).
        work.notes.append(SOURCE_NOT_READ_NOTE)
        return
    # With the source wallet unreadable, collateral might have covered the gap: outside
    # an emergency, no order is sent for what it could have covered; wait for a read.
    wait_for_source = (
        ctx.snapshot.source_unknown
        and rule is not Rule.EMERGENCY
        and ctx.policy.prefer is not Prefer.ORDERS
    )
    for step in _preferred_order(ctx.policy, add_collateral, reduce_exposure):
        if not _above_target(work, scope.target):
            return
        if step is reduce_exposure and wait_for_source:
            work.notes.append(SOURCE_UNKNOWN_NOTE)
            return
        step(ctx, scope, work, rule)
    if _above_target(work, scope.target) and not work.actions:
        work.notes.append("no action possible: no free collateral and no order above minimums")


def _relever(ctx: PlanContext, scope: Scope, work: ScopeState) -> None:
    policy = ctx.policy
    if not (policy.release_excess or policy.allow_increase):
        work.notes.append("below the band; release_excess and allow_increase are off")
        return
    steps = _preferred_order(
        policy,
        release_collateral if policy.release_excess else None,
        increase_exposure if policy.allow_increase else None,
    )
    for step in steps:
        if work.gross >= scope.target.leverage * work.equity:
            return
        step(ctx, scope, work, Rule.RELEVER)
