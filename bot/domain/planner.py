"""`plan_rebalance`: snapshot + targets + policy -> the actions that restore the band.

DESIGN.md §2–3. Leaving the band moves a scope back to its target `T`, not to the
band's edge. De-levering closes the gap with collateral and/or reduce-only orders in
the owner's preferred order; re-levering happens only when the owner allowed it.
The planner is pure: the clock and the journal's memory come in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from bot.domain.actions import (
    Action,
    MarginAdjustment,
    Order,
    Plan,
    Reason,
    RecentActivity,
    Rule,
    ScopeDecision,
    Transfer,
)
from bot.domain.leverage import (
    cross_equity,
    isolated_equity,
    notional,
    round_down,
    round_up,
    scope_metrics,
)
from bot.domain.models import ZERO, AccountSnapshot, MarketRules, Position
from bot.domain.targets import Policy, Prefer, Target, Targets


@dataclass(slots=True)
class _Budget:
    """Funds the plan may still use; shrinks as actions are planned."""

    source: Decimal  # what may still leave the source wallet (free - floor, daily cap)
    derivatives_free: Decimal


@dataclass(frozen=True, slots=True)
class _Scope:
    name: str
    positions: tuple[Position, ...]
    equity: Decimal
    target: Target
    isolated: Position | None  # the position when the scope is one isolated position


@dataclass(slots=True)
class _Work:
    """Running state while one scope is planned."""

    equity: Decimal
    gross: Decimal
    actions: list[Action]
    notes: list[str]


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
    actions: list[Action] = []
    decisions: list[ScopeDecision] = []
    for scope_actions, decision in _plan_cross(snapshot, targets, policy, now, activity, budget):
        actions.extend(scope_actions)
        decisions.append(decision)
    for scope in _isolated_scopes(snapshot, targets):
        scope_actions, decision, _ = _plan_scope(scope, snapshot, policy, now, activity, budget)
        actions.extend(scope_actions)
        decisions.append(decision)
    return Plan(created_at=now, actions=tuple(actions), decisions=tuple(decisions))


def _untrusted(snapshot: AccountSnapshot, policy: Policy, now: datetime) -> str | None:
    age = now - snapshot.taken_at
    if age > policy.max_snapshot_age:
        return (
            f"snapshot is stale ({age.total_seconds():.0f}s old, "
            f"max {policy.max_snapshot_age.total_seconds():.0f}s)"
        )
    for position in snapshot.positions:
        if position.mark_price is None or position.mark_price <= ZERO:
            return f"missing mark price for {position.symbol}"
        rules = snapshot.markets.get(position.symbol)
        if rules is None:
            return f"unknown market rules for {position.symbol}"
        if rules.amount_step is None or rules.amount_step <= ZERO:
            return f"unknown amount precision for {position.symbol}"
        if position.contracts <= ZERO:
            return f"position {position.key} has no contracts"
    return None


def _initial_budget(snapshot: AccountSnapshot, policy: Policy, activity: RecentActivity) -> _Budget:
    source = ZERO
    if snapshot.source is not None:
        source = max(ZERO, snapshot.source.free - policy.source_floor)
    if policy.daily_transfer_cap is not None:
        cap_left = max(ZERO, policy.daily_transfer_cap - activity.transferred_today)
        source = min(source, cap_left)
    return _Budget(source=source, derivatives_free=max(ZERO, snapshot.derivatives.free))


def _plan_cross(
    snapshot: AccountSnapshot,
    targets: Targets,
    policy: Policy,
    now: datetime,
    activity: RecentActivity,
    budget: _Budget,
) -> list[tuple[list[Action], ScopeDecision]]:
    """The account scope, then each per-symbol override (it bounds that symbol's n / E).

    The cross scopes share one equity, so each starts from the equity and positions the
    scopes before it planned: a transfer or a cut is never counted twice.
    """
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
        scope = _Scope(name, legs, equity, target, None)
        actions, decision, work = _plan_scope(scope, snapshot, policy, now, activity, budget)
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
        budget.derivatives_free = min(budget.derivatives_free, max(ZERO, surplus))
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


def _isolated_scopes(snapshot: AccountSnapshot, targets: Targets) -> list[_Scope]:
    return [
        _Scope(
            f"{snapshot.account}/{position.key}",
            (position,),
            isolated_equity(position),
            targets.for_symbol(position.symbol),
            position,
        )
        for position in sorted(snapshot.isolated_positions(), key=lambda p: p.key)
    ]


def _plan_scope(
    scope: _Scope,
    snapshot: AccountSnapshot,
    policy: Policy,
    now: datetime,
    activity: RecentActivity,
    budget: _Budget,
) -> tuple[list[Action], ScopeDecision, _Work]:
    target = scope.target
    metrics = scope_metrics(scope.equity, scope.positions, snapshot.markets)
    work = _Work(scope.equity, metrics.notional, [], [])
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
        _delever(scope, snapshot, policy, now, activity, budget, work, rule)
    elif rule is Rule.RELEVER:
        _relever(scope, snapshot, policy, now, activity, budget, work)

    decision = ScopeDecision(
        scope=scope.name,
        leverage=metrics.leverage,
        margin_ratio=metrics.margin_ratio,
        target=target.leverage,
        band=(target.min, target.max),
        rule=rule,
        expected_leverage=_leverage(work.gross, work.equity),
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


def _leverage(gross: Decimal, equity: Decimal) -> Decimal | None:
    if equity <= ZERO:
        return None
    return gross / equity


def _reason(scope: _Scope, rule: Rule, before: _Work, after: _Work, detail: str) -> Reason:
    return Reason(
        rule=rule,
        scope=scope.name,
        leverage_before=_leverage(before.gross, before.equity),
        leverage_after=_leverage(after.gross, after.equity),
        detail=detail,
    )


def _above_target(work: _Work, target: Target) -> bool:
    return work.gross > target.leverage * work.equity


def _delever(
    scope: _Scope,
    snapshot: AccountSnapshot,
    policy: Policy,
    now: datetime,
    activity: RecentActivity,
    budget: _Budget,
    work: _Work,
    rule: Rule,
) -> None:
    if rule is Rule.EMERGENCY and not _above_target(work, scope.target):
        work.notes.append("emergency, but the scope is already at or below its target")
        return
    steps = ("collateral", "orders")
    if policy.prefer is Prefer.ORDERS:
        steps = ("orders", "collateral")
    for step in steps:
        if not _above_target(work, scope.target):
            return
        if step == "collateral":
            _add_collateral(scope, snapshot, budget, work, rule)
        else:
            _reduce_exposure(scope, snapshot, policy, now, activity, budget, work, rule)
    if _above_target(work, scope.target) and not work.actions:
        work.notes.append("no action possible: no free collateral and no order above minimums")


def _add_collateral(
    scope: _Scope, snapshot: AccountSnapshot, budget: _Budget, work: _Work, rule: Rule
) -> None:
    step = Decimal(1).scaleb(-snapshot.transfer_places)
    need = round_up(work.gross / scope.target.leverage - work.equity, step)
    before = _Work(work.equity, work.gross, [], [])

    if scope.isolated is None:
        amount = min(need, round_down(budget.source, step))
        if amount < max(step, snapshot.min_transfer):
            work.notes.append(f"collateral: source wallet has {budget.source:.2f} available")
            return
        budget.source -= amount
        work.equity += amount
        work.actions.append(
            Transfer(
                snapshot.settle,
                amount,
                True,
                _reason(scope, rule, before, work, "transfer collateral in"),
            )
        )
        return

    position = scope.isolated
    if not snapshot.can_adjust_margin:
        work.notes.append("collateral: the exchange cannot add isolated margin")
        return
    available = budget.derivatives_free + budget.source
    amount = min(need, round_down(available, step))
    if amount < step:
        work.notes.append(f"collateral: only {available:.2f} free for margin")
        return
    shortfall = amount - budget.derivatives_free
    if shortfall > ZERO:
        transfer = max(round_up(shortfall, step), snapshot.min_transfer)
        if transfer > budget.source:
            amount = round_down(budget.derivatives_free, step)
            transfer = ZERO
            if amount < step:
                work.notes.append("collateral: source transfer would be below the minimum")
                return
        if transfer > ZERO:
            budget.source -= transfer
            budget.derivatives_free += transfer
            work.actions.append(
                Transfer(
                    snapshot.settle,
                    transfer,
                    True,
                    _reason(scope, rule, before, before, "fund isolated margin"),
                )
            )
    budget.derivatives_free -= amount
    work.equity += amount
    work.actions.append(
        MarginAdjustment(
            position.symbol,
            position.side,
            amount,
            True,
            _reason(scope, rule, before, work, "add isolated margin"),
            hedged=position.hedged,
        )
    )


def _fee_rate(scope: _Scope, markets: dict[str, MarketRules]) -> Decimal:
    """Notional-weighted taker fee across the scope's positions."""
    total = ZERO
    weighted = ZERO
    for p in scope.positions:
        n = notional(p)
        total += n
        weighted += n * markets[p.symbol].taker_fee
    return weighted / total if total > ZERO else ZERO


def _in_cooldown(
    scope: _Scope, policy: Policy, now: datetime, activity: RecentActivity, work: _Work
) -> bool:
    last = activity.last_order_at.get(scope.name)
    if last is not None and now - last < policy.cooldown:
        work.notes.append(f"orders wait for cooldown until {(last + policy.cooldown).isoformat()}")
        return True
    return False


def _reduce_exposure(
    scope: _Scope,
    snapshot: AccountSnapshot,
    policy: Policy,
    now: datetime,
    activity: RecentActivity,
    budget: _Budget,
    work: _Work,
    rule: Rule,
) -> None:
    emergency = rule is Rule.EMERGENCY
    if scope.isolated is not None and not snapshot.can_adjust_margin and not emergency:
        # The reduce releases margin pro rata; without re-pledging it the leverage stays
        # where it is, and every cycle would cut the position again.
        work.notes.append(
            "orders: reducing an isolated position that cannot take its margin back "
            "leaves its leverage unchanged"
        )
        return
    if not emergency and _in_cooldown(scope, policy, now, activity, work):
        return
    target = scope.target.leverage
    cost = _fee_rate(scope, snapshot.markets) + policy.slippage_allowance
    denominator = Decimal(1) - target * cost
    if denominator <= ZERO:
        work.notes.append("orders: fee too high for this target")
        return
    # Reducing notional by dN costs (f + slippage) * dN of equity:
    # dN = (N - T * E') / (1 - T * (f + s)).
    wanted = min((work.gross - target * work.equity) / denominator, work.gross)
    before = _Work(work.equity, work.gross, [], [])
    total = work.gross
    for position in sorted(scope.positions, key=lambda p: p.key):
        share = wanted * notional(position) / total
        rules = snapshot.markets[position.symbol]
        amount = _order_amount(position, rules, share, policy, emergency, work)
        if amount is None:
            continue
        price = position.mark_price
        assert price is not None
        reduced = amount * position.contract_size * price
        # The fee is charged on the fill price, which slippage moves against us.
        slippage = policy.slippage_allowance
        fee_paid = reduced * (rules.taker_fee * (1 + slippage) + slippage)
        work.gross -= reduced
        work.equity -= fee_paid
        work.actions.append(
            Order(
                position.symbol,
                position.side,
                amount,
                True,
                price,
                reduced,
                _reason(scope, rule, before, work, "reduce-only order"),
                hedged=position.hedged,
            )
        )
        if scope.isolated is not None:
            _repledge_released_margin(scope, snapshot, position, amount, fee_paid, rule, work)


def _repledge_released_margin(
    scope: _Scope,
    snapshot: AccountSnapshot,
    position: Position,
    amount: Decimal,
    fee_paid: Decimal,
    rule: Rule,
    work: _Work,
) -> None:
    """Isolated reduces release margin pro rata: put it back so the leverage falls.

    The exchange moves `fraction * E_p` (margin plus realized PnL) to the wallet and
    charges the fee there; adding the net back leaves the leg at `E_p - cost`, where
    `cost` is the fee plus the slippage allowance.
    """
    if amount >= position.contracts:
        return  # closed outright: nothing left to re-pledge to
    fraction = amount / position.contracts
    equity_before_order = work.equity + fee_paid
    if not snapshot.can_adjust_margin:
        work.equity = equity_before_order * (1 - fraction)
        work.notes.append("orders: released isolated margin cannot be re-pledged on this exchange")
        return
    step = Decimal(1).scaleb(-snapshot.transfer_places)
    released = round_down(equity_before_order * fraction - fee_paid, step)
    if released < step:
        return
    work.actions.append(
        MarginAdjustment(
            position.symbol,
            position.side,
            released,
            True,
            _reason(scope, rule, work, work, "re-pledge margin released by the reduce order"),
            hedged=position.hedged,
        )
    )


def _order_amount(
    position: Position,
    rules: MarketRules,
    notional_share: Decimal,
    policy: Policy,
    emergency: bool,
    work: _Work,
    *,
    reduce: bool = True,
) -> Decimal | None:
    """Contracts for one order: rounded down to precision, within limits, or None to skip."""
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
    if amount >= minimum:
        return amount
    if emergency and reduce:
        # In an emergency, round up to the minimum, or close the position outright.
        return min(minimum, position.contracts)
    work.notes.append(
        f"{position.key}: {amount} contracts is below the market minimum {minimum}; skipped"
    )
    return None


def _relever(
    scope: _Scope,
    snapshot: AccountSnapshot,
    policy: Policy,
    now: datetime,
    activity: RecentActivity,
    budget: _Budget,
    work: _Work,
) -> None:
    if not (policy.release_excess or policy.allow_increase):
        work.notes.append("below the band; release_excess and allow_increase are off")
        return
    steps = ("collateral", "orders")
    if policy.prefer is Prefer.ORDERS:
        steps = ("orders", "collateral")
    for step in steps:
        if work.gross >= scope.target.leverage * work.equity:
            return
        if step == "collateral" and policy.release_excess:
            _release_collateral(scope, snapshot, budget, work)
        elif step == "orders" and policy.allow_increase:
            _increase_exposure(scope, snapshot, policy, now, activity, work)


def _release_collateral(
    scope: _Scope, snapshot: AccountSnapshot, budget: _Budget, work: _Work
) -> None:
    step = Decimal(1).scaleb(-snapshot.transfer_places)
    surplus = round_down(work.equity - work.gross / scope.target.leverage, step)
    before = _Work(work.equity, work.gross, [], [])
    if scope.isolated is None:
        amount = min(surplus, round_down(budget.derivatives_free, step))
        if amount < max(step, snapshot.min_transfer):
            work.notes.append("release: nothing free to move out")
            return
        budget.derivatives_free -= amount
        work.equity -= amount
        work.actions.append(
            Transfer(
                snapshot.settle,
                amount,
                False,
                _reason(scope, Rule.RELEVER, before, work, "release excess collateral"),
            )
        )
        return
    position = scope.isolated
    if not snapshot.can_adjust_margin:
        work.notes.append("release: the exchange cannot reduce isolated margin")
        return
    # Unrealized profit is not margin: the exchange only lets the margin itself go.
    surplus = min(surplus, round_down(position.isolated_margin, step))
    if surplus < step:
        return
    work.equity -= surplus
    budget.derivatives_free += surplus
    work.actions.append(
        MarginAdjustment(
            position.symbol,
            position.side,
            surplus,
            False,
            _reason(scope, Rule.RELEVER, before, work, "release isolated margin"),
            hedged=position.hedged,
        )
    )


def _increase_exposure(
    scope: _Scope,
    snapshot: AccountSnapshot,
    policy: Policy,
    now: datetime,
    activity: RecentActivity,
    work: _Work,
) -> None:
    if _in_cooldown(scope, policy, now, activity, work):
        return
    target = scope.target.leverage
    cost = _fee_rate(scope, snapshot.markets) + policy.slippage_allowance
    # Adding dN of notional costs (f + s) * dN: dN = (T * E - N) / (1 + T * (f + s)).
    wanted = (target * work.equity - work.gross) / (Decimal(1) + target * cost)
    before = _Work(work.equity, work.gross, [], [])
    total = work.gross
    for position in sorted(scope.positions, key=lambda p: p.key):
        share = wanted * notional(position) / total
        rules = snapshot.markets[position.symbol]
        amount = _order_amount(position, rules, share, policy, False, work, reduce=False)
        if amount is None:
            continue
        price = position.mark_price
        assert price is not None
        added = amount * position.contract_size * price
        work.gross += added
        work.equity -= added * (rules.taker_fee + policy.slippage_allowance)
        work.actions.append(
            Order(
                position.symbol,
                position.side,
                amount,
                False,
                price,
                added,
                _reason(scope, Rule.RELEVER, before, work, "increase exposure (allowed)"),
                hedged=position.hedged,
            )
        )
