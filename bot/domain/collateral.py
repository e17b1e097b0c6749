"""Collateral steps of the planner: transfers between wallets and isolated margin.

De-levering adds collateral (a transfer in, or margin added to an isolated position);
re-levering releases what a scope holds above its target. Isolated reduce orders
release margin pro rata, and `repledge_released_margin` puts it back.
"""

from __future__ import annotations

from decimal import Decimal

from bot.domain.actions import MarginAdjustment, Rule, Transfer
from bot.domain.leverage import round_down, round_up
from bot.domain.models import ZERO, Position
from bot.domain.planning_state import PlanContext, Scope, ScopeState, reason_for


def add_collateral(ctx: PlanContext, scope: Scope, work: ScopeState, rule: Rule) -> None:
    """Bring the scope's equity up to `gross / T`, as far as the budget allows."""
    snapshot, budget, step = ctx.snapshot, ctx.budget, ctx.transfer_step
    need = round_up(work.gross / scope.target.leverage - work.equity, step)
    before = work.checkpoint()

    if scope.isolated is None:
        if snapshot.source_unknown:
            work.notes.append("collateral: source wallet unreadable, its balance is unknown")
            return
        amount = min(need, round_down(budget.source, step))
        if amount < max(step, snapshot.min_transfer):
            work.notes.append(f"collateral: source wallet has {budget.source:.2f} available")
            return
        budget.source -= amount
        work.equity += amount
        work.actions.append(
            Transfer(
                currency=snapshot.settle,
                amount=amount,
                into_derivatives=True,
                reason=reason_for(scope, rule, before, work, "transfer collateral in"),
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
                    currency=snapshot.settle,
                    amount=transfer,
                    into_derivatives=True,
                    reason=reason_for(scope, rule, before, before, "fund isolated margin"),
                )
            )
    budget.derivatives_free -= amount
    work.equity += amount
    work.actions.append(
        MarginAdjustment(
            symbol=position.symbol,
            side=position.side,
            amount=amount,
            add=True,
            reason=reason_for(scope, rule, before, work, "add isolated margin"),
            hedged=position.hedged,
        )
    )


def repledge_released_margin(
    ctx: PlanContext,
    scope: Scope,
    work: ScopeState,
    rule: Rule,
    position: Position,
    amount: Decimal,
    fee_paid: Decimal,
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
    if not ctx.snapshot.can_adjust_margin:
        work.equity = equity_before_order * (1 - fraction)
        work.notes.append("orders: released isolated margin cannot be re-pledged on this exchange")
        return
    step = ctx.transfer_step
    released = round_down(equity_before_order * fraction - fee_paid, step)
    if released < step:
        return
    work.actions.append(
        MarginAdjustment(
            symbol=position.symbol,
            side=position.side,
            amount=released,
            add=True,
            reason=reason_for(
                scope, rule, work, work, "re-pledge margin released by the reduce order"
            ),
            hedged=position.hedged,
        )
    )


def release_collateral(ctx: PlanContext, scope: Scope, work: ScopeState, rule: Rule) -> None:
    """Move what the scope holds above `gross / T` out (transfer or isolated margin)."""
    snapshot, budget, step = ctx.snapshot, ctx.budget, ctx.transfer_step
    surplus = round_down(work.equity - work.gross / scope.target.leverage, step)
    before = work.checkpoint()
    if scope.isolated is None:
        amount = min(surplus, round_down(budget.derivatives_free, step))
        if amount < max(step, snapshot.min_transfer):
            work.notes.append("release: nothing free to move out")
            return
        budget.derivatives_free -= amount
        work.equity -= amount
        work.actions.append(
            Transfer(
                currency=snapshot.settle,
                amount=amount,
                into_derivatives=False,
                reason=reason_for(scope, rule, before, work, "release excess collateral"),
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
            symbol=position.symbol,
            side=position.side,
            amount=surplus,
            add=False,
            reason=reason_for(scope, rule, before, work, "release isolated margin"),
            hedged=position.hedged,
        )
    )
