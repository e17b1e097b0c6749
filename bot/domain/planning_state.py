"""The running state of one `plan_rebalance` pass: the funds left, the scope, its figures.

Shared by the planner and its collateral and order steps; each step shrinks the budget
and moves the scope's equity and gross notional as it plans an action.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from bot.domain.actions import Action, Reason, Rule
from bot.domain.models import ZERO, Position
from bot.domain.targets import Target


@dataclass(slots=True)
class Budget:
    """Funds the plan may still use; shrinks as actions are planned."""

    source: Decimal  # what may still leave the source wallet (free - floor, daily cap)
    derivatives_free: Decimal


@dataclass(frozen=True, slots=True)
class Scope:
    name: str
    positions: tuple[Position, ...]
    equity: Decimal
    target: Target
    isolated: Position | None  # the position when the scope is one isolated position


@dataclass(slots=True)
class ScopeState:
    """Running state while one scope is planned."""

    equity: Decimal
    gross: Decimal
    actions: list[Action]
    notes: list[str]


def leverage_of(gross: Decimal, equity: Decimal) -> Decimal | None:
    """`gross / equity`, or None when the equity is not positive."""
    if equity <= ZERO:
        return None
    return gross / equity


def reason_for(
    scope: Scope, rule: Rule, before: ScopeState, after: ScopeState, detail: str
) -> Reason:
    """Why an action was planned, with the scope's leverage before and after it."""
    return Reason(
        rule=rule,
        scope=scope.name,
        leverage_before=leverage_of(before.gross, before.equity),
        leverage_after=leverage_of(after.gross, after.equity),
        detail=detail,
    )
