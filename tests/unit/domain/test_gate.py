"""The risk gate: which planned actions may reach the exchange, and why not."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from bot.domain.actions import Order, Plan, Reason, Rule, Transfer
from bot.domain.gate import TradingState, gate
from bot.domain.models import Side

NOW = datetime(2024, 5, 19, tzinfo=UTC)
REASON = Reason(Rule.DELEVER, "main", Decimal(4), Decimal(3))
TRANSFER = Transfer("USDT", Decimal(100), True, REASON)
ORDER = Order("BTC/USDT:USDT", Side.LONG, Decimal("0.01"), True, Decimal(50000),
              Decimal(500), REASON)  # fmt: skip
PLAN = Plan(NOW, (TRANSFER, ORDER))


def test_gate_when_active_and_live_then_everything_allowed() -> None:
    decision = gate(PLAN, TradingState.ACTIVE, dry_run=False)
    assert decision.allowed == (TRANSFER, ORDER)
    assert decision.denied == ()
    assert decision.plan(PLAN).actions == (TRANSFER, ORDER)


@pytest.mark.parametrize(
    ("state", "dry_run", "reason"),
    [
        (TradingState.PAUSED, False, "account paused by the owner"),
        (TradingState.HALTED, False, "account halted"),
        (TradingState.ACTIVE, True, "dry run: nothing is sent to the exchange"),
        (TradingState.PAUSED, True, "account paused by the owner"),
    ],
)
def test_gate_when_not_allowed_to_act_then_every_action_denied_with_reason(
    state: TradingState, dry_run: bool, reason: str
) -> None:
    decision = gate(PLAN, state, dry_run)
    assert decision.allowed == ()
    assert [d.action for d in decision.denied] == [TRANSFER, ORDER]
    assert all(d.reason.startswith(reason) for d in decision.denied)
    assert decision.plan(PLAN).actions == ()
    assert decision.plan(PLAN).created_at == NOW
