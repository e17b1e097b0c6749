"""The risk gate: the last word between a plan and the exchange.

A trading state per account decides which planned actions may go out. Denied actions
keep their reason, so the journal and the owner see what was held back and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.domain.actions import Action, Plan


class TradingState(StrEnum):
    """ACTIVE acts; PAUSED (by the owner), HALTED (bad keys) and DRY_RUN (by config)
    only watch. The one word for an account's state, wherever it is shown."""

    ACTIVE = "active"
    PAUSED = "paused"
    HALTED = "halted"
    DRY_RUN = "dry-run"


def trading_state(*, halted: bool, paused: bool, dry_run: bool) -> TradingState:
    """An account's state: halted wins over paused, paused over dry run."""
    if halted:
        return TradingState.HALTED
    if paused:
        return TradingState.PAUSED
    if dry_run:
        return TradingState.DRY_RUN
    return TradingState.ACTIVE


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


def gate(plan: Plan, state: TradingState) -> GateDecision:
    """Split the plan's actions into allowed and denied, each denial with its reason."""
    allowed: list[Action] = []
    denied: list[Denied] = []
    for action in plan.actions:
        reason = _denial(state)
        if reason is None:
            allowed.append(action)
        else:
            denied.append(Denied(action, reason))
    return GateDecision(tuple(allowed), tuple(denied))


_DENIALS = {
    TradingState.HALTED: "account halted (authentication or permission error); fix keys and resume",
    TradingState.PAUSED: "account paused by the owner",
    TradingState.DRY_RUN: "dry run: nothing is sent to the exchange",
}


def _denial(state: TradingState) -> str | None:
    return _DENIALS.get(state)
