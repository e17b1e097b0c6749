"""The one verdict on an action (`ActionOutcome`), and the words shared across rooms."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bot.domain.actions import (
    MarginAdjustment,
    Order,
    Reason,
    Rule,
    Transfer,
    describe_action,
)
from bot.domain.models import OrderSide, Side
from bot.domain.outcomes import (
    ActionOutcome,
    ActionStatus,
    OrderResult,
    OrderStatus,
    TransferResult,
)
from bot.domain.targets import Target, TargetError

REASON = Reason(Rule.DELEVER, "main", Decimal(4), Decimal(3))
ORDER = Order(
    symbol="BTC/USDT:USDT",
    position_side=Side.LONG,
    amount=Decimal("0.012"),
    reduce_only=True,
    expected_price=Decimal(50000),
    notional=Decimal(600),
    reason=REASON,
)
TRANSFER = Transfer(currency="USDT", amount=Decimal(100), into_derivatives=True, reason=REASON)


def receipt(status: OrderStatus, filled: str) -> OrderResult:
    return OrderResult(
        client_order_id="lb1", exchange_id="1", symbol="BTC/USDT:USDT", side=OrderSide.SELL,
        amount=Decimal("0.012"), filled=Decimal(filled), average_price=None, fee=Decimal(0),
        status=status,
    )  # fmt: skip


@pytest.mark.parametrize(
    "status", [OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED]
)
def test_outcome_when_dead_order_filled_nothing_then_failed_with_why(status: OrderStatus) -> None:
    outcome = ActionOutcome.of(ORDER, "lb1", receipt(status, "0"))

    assert outcome.status is ActionStatus.FAILED and not outcome.ok
    assert outcome.error == f"order {status.value} with nothing filled"
    assert outcome.receipt is not None


@pytest.mark.parametrize(
    ("status", "filled"),
    [(OrderStatus.CLOSED, "0.012"), (OrderStatus.OPEN, "0"), (OrderStatus.CANCELED, "0.004")],
)
def test_outcome_when_order_acted_or_may_still_then_ok(status: OrderStatus, filled: str) -> None:
    assert ActionOutcome.of(ORDER, "lb1", receipt(status, filled)).ok


def test_outcome_when_transfer_receipt_then_ok() -> None:
    done = TransferResult(
        transfer_id="T1", currency="USDT", amount=Decimal(100), into_derivatives=True
    )
    assert ActionOutcome.of(TRANSFER, "lb2", done).status is ActionStatus.OK


def test_outcome_when_error_given_then_failed_unless_said_unknown() -> None:
    assert ActionOutcome(ORDER, "lb1", None, "timeout").status is ActionStatus.FAILED
    unknown = ActionOutcome(ORDER, "lb1", None, "timeout", ActionStatus.UNKNOWN)
    assert unknown.status is ActionStatus.UNKNOWN


def test_describe_action_when_each_kind_then_one_line() -> None:
    margin = MarginAdjustment(
        symbol="ETH/USDT:USDT", side=Side.SHORT, amount=Decimal("12.5"), add=True, reason=REASON
    )
    assert describe_action(ORDER) == "sell 0.012 BTC/USDT:USDT (reduce-only, ~600.00)"
    assert describe_action(TRANSFER) == "transfer in 100 USDT"
    assert describe_action(margin) == "add margin 12.5 ETH/USDT:USDT"


def test_target_moved_to_when_no_edges_then_band_keeps_its_proportions() -> None:
    current = Target(Decimal(5), Decimal(4), Decimal(6), Decimal("0.7"), Decimal("0.05"))

    moved = current.moved_to(Decimal(10))

    assert (moved.leverage, moved.min, moved.max) == (Decimal(10), Decimal(8), Decimal(12))
    assert moved.emergency_margin_ratio == Decimal("0.7")
    assert moved.emergency_liquidation_distance == Decimal("0.05")


def test_target_moved_to_when_edges_given_then_used_as_is_and_checked() -> None:
    current = Target(Decimal(3), Decimal("2.5"), Decimal("3.5"))

    assert current.moved_to(Decimal(4), Decimal("3.25"), Decimal(5)).min == Decimal("3.25")
    with pytest.raises(TargetError, match="min"):
        current.moved_to(Decimal(4), Decimal(4), Decimal(5))


def test_target_moved_to_when_rescaled_then_rounded_to_cents() -> None:
    moved = Target(Decimal(3), Decimal("2.5"), Decimal("3.5")).moved_to(Decimal(7))
    assert (moved.min, moved.max) == (Decimal("5.83"), Decimal("8.17"))
