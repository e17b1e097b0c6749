"""The running state of one `plan_rebalance` pass: the funds left, the scope, its figures.

Shared by the planner and its collateral and order steps: each step gets the pass's
`PlanContext`, shrinks its budget, and moves the scope's equity and gross notional as
it plans an action.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from bot.domain.actions import Action, Reason, RecentActivity, Rule
from bot.domain.models import ZERO, AccountSnapshot, Position
from bot.domain.targets import Policy, Target


@dataclass(slots=True)
class Budget:
    """Funds the plan may still use; shrinks as actions are planned."""

    source: Decimal  # what may still leave the source wallet (free - floor, daily cap)
    derivatives_free: Decimal


@dataclass(frozen=True, slots=True)
class PlanContext:
    """What one planning pass is planned against; only the shared budget changes."""

    snapshot: AccountSnapshot
    policy: Policy
    now: datetime
    activity: RecentActivity
    budget: Budget

    @property
    def transfer_step(self) -> Decimal:
        """The smallest amount a transfer or margin change can move."""
        return Decimal(1).scaleb(-self.snapshot.transfer_places)


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

    def checkpoint(self) -> ScopeState:
        """The figures as they are now, to measure the leverage after an action against."""
        return ScopeState(self.equity, self.gross, [], [])


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
