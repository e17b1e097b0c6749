"""The risk gate: the last word between a plan and the exchange.

A trading state per account decides which planned actions may go out. Denied actions
keep their reason, so the journal and the owner see what was held back and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.domain.actions import Action, Plan


class TradingState(StrEnum):
    """ACTIVE acts; PAUSED (by the owner) and HALTED (bad keys) only watch."""

    ACTIVE = "active"
    PAUSED = "paused"
    HALTED = "halted"


@dataclass(frozen=True, slots=True)
class Denied:
    action: Action
    reason: str


@dataclass(frozen=True, slots=True)
class GateDecision:
    allowed: tuple[Action, ...]
    denied: tuple[Denied, ...]

    def plan(self, plan: Plan) -> Plan:
        """The plan restricted to the allowed actions."""
        return Plan(plan.created_at, self.allowed, plan.decisions, plan.notes)


def gate(plan: Plan, state: TradingState, dry_run: bool) -> GateDecision:
    """Split the plan's actions into allowed and denied, each denial with its reason."""
    allowed: list[Action] = []
    denied: list[Denied] = []
    for action in plan.actions:
        reason = _denial(action, state, dry_run)
        if reason is None:
            allowed.append(action)
        else:
            denied.append(Denied(action, reason))
    return GateDecision(tuple(allowed), tuple(denied))


def _denial(action: Action, state: TradingState, dry_run: bool) -> str | None:
    if state is TradingState.HALTED:
        return "account halted (authentication or permission error); fix keys and resume"
    if state is TradingState.PAUSED:
        return "account paused by the owner"
    if dry_run:
        return "dry run: nothing is sent to the exchange"
    return None
