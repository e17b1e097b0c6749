"""The risk gate: which planned actions may reach the exchange, and why not."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from bot.domain.actions import Order, Plan, Reason, Rule, Transfer
from bot.domain.gate import TradingState, gate, trading_state
from bot.domain.models import Side

NOW = datetime(2024, 5, 19, tzinfo=UTC)
REASON = Reason(Rule.DELEVER, "main", Decimal(4), Decimal(3))
TRANSFER = Transfer(currency="USDT", amount=Decimal(100), into_derivatives=True, reason=REASON)
ORDER = Order(
    symbol="BTC/USDT:USDT",
    position_side=Side.LONG,
    amount=Decimal("0.01"),
    reduce_only=True,
    expected_price=Decimal(50000),
    notional=Decimal(500),
    reason=REASON,
)
PLAN = Plan(NOW, (TRANSFER, ORDER))


def test_gate_when_active_and_live_then_everything_allowed() -> None:
    decision = gate(PLAN, TradingState.ACTIVE)
    assert decision.allowed == (TRANSFER, ORDER)
    assert decision.denied == ()
    assert decision.plan(PLAN).actions == (TRANSFER, ORDER)


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (TradingState.PAUSED, "account paused by the owner"),
        (TradingState.HALTED, "account halted"),
        (TradingState.DRY_RUN, "dry run: nothing is sent to the exchange"),
    ],
)
def test_gate_when_not_allowed_to_act_then_every_action_denied_with_reason(
    state: TradingState, reason: str
) -> None:
    decision = gate(PLAN, state)
    assert decision.allowed == ()
    assert [d.action for d in decision.denied] == [TRANSFER, ORDER]
    assert all(d.reason.startswith(reason) for d in decision.denied)
    assert decision.plan(PLAN).actions == ()
    assert decision.plan(PLAN).created_at == NOW


@pytest.mark.parametrize(
    ("halted", "paused", "dry_run", "state"),
    [
        (False, False, False, TradingState.ACTIVE),
        (False, False, True, TradingState.DRY_RUN),
        (False, True, True, TradingState.PAUSED),
        (True, True, True, TradingState.HALTED),
        (True, False, False, TradingState.HALTED),
    ],
)
def test_trading_state_when_flags_combine_then_halted_beats_paused_beats_dry_run(
    halted: bool, paused: bool, dry_run: bool, state: TradingState
) -> None:
    assert trading_state(halted=halted, paused=paused, dry_run=dry_run) is state
