"""Intents before exchange writes, results after, and recovery after a crash."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy.exc import IntegrityError

from bot.domain.actions import ActionKind, MarginAdjustment
from bot.domain.models import OrderSide, Side
from bot.domain.outcomes import ActionOutcome
from bot.exchange.port import MarginResult, OrderResult, OrderStatus, TransferResult
from bot.store.journal import Journal
from bot.store.records import ActionStatus, PendingIntent, UnknownIntent
from tests.integration.store.builders import T0, FakeClock, reduce_order, transfer_in


def filled(
    client_id: str, status: OrderStatus = OrderStatus.CLOSED, amount: str = "0.012"
) -> OrderResult:
    return OrderResult(
        client_order_id=client_id,
        exchange_id="8389765519",
        symbol="BTC/USDT:USDT",
        side=OrderSide.SELL,
        amount=Decimal("0.012"),
        filled=Decimal(amount),
        average_price=Decimal("61200.10") if amount != "0" else None,
        fee=Decimal("0.36720060") if amount != "0" else Decimal(0),
        status=status,
    )


async def test_intent_when_written_then_pending_until_result(
    journal: Journal, clock: FakeClock
) -> None:
    cycle_id = await journal.start_cycle("main", T0)
    recorder = journal.actions("main", cycle_id)
    order = reduce_order()

    await recorder.intent(order, "lb-1")
    [pending] = await journal.pending_intents("main")
    clock.advance(timedelta(seconds=2))
    await recorder.result(ActionOutcome(order, "lb-1", filled("lb-1")))

    assert pending == PendingIntent(
        client_id="lb-1",
        kind=ActionKind.REDUCE_ORDER,
        symbol="BTC/USDT:USDT",
        side="sell",
        amount=Decimal("0.012"),
        created_at=T0,
        cycle_id=cycle_id,
        hedged=False,
    )
    assert await journal.pending_intents("main") == []
    [action] = await journal.cycle_actions(cycle_id)
    assert action.status is ActionStatus.OK
    assert (action.exchange_id, action.filled, action.fill_price, action.fee) == (
        "8389765519",
        Decimal("0.012"),
        Decimal("61200.10"),
        Decimal("0.36720060"),
    )
    assert (action.rule, action.scope) == ("de-lever", "cross")
    assert (action.leverage_before, action.leverage_after) == (Decimal("7.25"), Decimal("5.00"))
    assert action.reason == "de-lever cross: leverage 7.25 -> 5.00 (band 4-6)"
    assert (action.created_at, action.updated_at) == (T0, T0 + timedelta(seconds=2))


async def test_result_when_exchange_error_then_failed_with_error(journal: Journal) -> None:
    cycle_id = await journal.start_cycle("main", T0)
    recorder = journal.actions("main", cycle_id)
    action = transfer_in("250.5")
    await recorder.intent(action, "lb-2")
    await recorder.result(ActionOutcome(action, "lb-2", None, "InsufficientFunds: spot empty"))

    [record] = await journal.cycle_actions(cycle_id)
    assert (record.status, record.error) == (ActionStatus.FAILED, "InsufficientFunds: spot empty")
    assert record.exchange_id is None
    assert await journal.pending_intents("main") == []


async def test_result_when_order_canceled_with_nothing_filled_then_failed(
    journal: Journal,
) -> None:
    cycle_id = await journal.start_cycle("main", T0)
    recorder = journal.actions("main", cycle_id)
    await recorder.intent(reduce_order(), "lb-3")
    # The verdict is the outcome's (decided where the receipt comes in); the journal keeps it.
    receipt = filled("lb-3", OrderStatus.CANCELED, "0")
    await recorder.result(ActionOutcome.of(reduce_order(), "lb-3", receipt))

    [action] = await journal.cycle_actions(cycle_id)
    assert action.status is ActionStatus.FAILED
    assert action.error == "order canceled with nothing filled"


async def test_result_when_transfer_and_margin_then_receipts_recorded(journal: Journal) -> None:
    cycle_id = await journal.start_cycle("main", T0)
    recorder = journal.actions("main", cycle_id)
    transfer = transfer_in("100")
    margin = MarginAdjustment(
        symbol="ETH/USDT:USDT",
        side=Side.SHORT,
        amount=Decimal("12.5"),
        add=True,
        reason=transfer.reason,
        hedged=True,
    )
    await recorder.intent(transfer, "lb-t")
    await recorder.result(
        ActionOutcome(
            transfer,
            "lb-t",
            TransferResult(
                transfer_id="T-77", currency="USDT", amount=Decimal("100"), into_derivatives=True
            ),
        )
    )
    await recorder.intent(margin, "lb-m")
    receipt = MarginResult(
        symbol="ETH/USDT:USDT", side=Side.SHORT, amount=Decimal("12.5"), add=True
    )
    await recorder.result(ActionOutcome(margin, "lb-m", receipt))

    by_id = {a.client_id: a for a in await journal.cycle_actions(cycle_id)}
    transfer_record = by_id["lb-t"]
    assert (transfer_record.symbol, transfer_record.side) == ("USDT", None)
    assert transfer_record.exchange_id == "T-77"
    assert (by_id["lb-m"].kind, by_id["lb-m"].side, by_id["lb-m"].filled) == (
        ActionKind.ADD_MARGIN,
        "short",
        Decimal("12.5"),
    )


async def test_intent_when_process_dies_before_result_then_pending_after_reopen(
    db_url: str,
) -> None:
    first = await Journal.open(db_url)
    cycle_id = await first.start_cycle("main", T0)
    await first.actions("main", cycle_id).intent(reduce_order(), "lb-crash")
    await first.actions("main", cycle_id).intent(transfer_in(), "lb-done")
    await first.actions("main", cycle_id).result(
        ActionOutcome(
            transfer_in(),
            "lb-done",
            TransferResult(
                transfer_id="T-1", currency="USDT", amount=Decimal(100), into_derivatives=True
            ),
        )
    )
    # The process dies here: no result for lb-crash, no finish_cycle, no end_run.
    await first.close()

    second = await Journal.open(db_url)
    try:
        pending = await second.pending_intents("main")
        await second.resolve_intent(
            "lb-crash", "ok", exchange_id="X-9", fill_price=Decimal("61000"), fee=Decimal("0.3")
        )
        after = await second.pending_intents("main")
        [resolved] = [a for a in await second.cycle_actions(cycle_id) if a.client_id == "lb-crash"]
    finally:
        await second.close()

    assert [p.client_id for p in pending] == ["lb-crash"]
    assert after == []
    assert (resolved.status, resolved.exchange_id, resolved.fill_price, resolved.fee) == (
        ActionStatus.OK,
        "X-9",
        Decimal("61000"),
        Decimal("0.3"),
    )


async def test_pending_intents_when_dry_run_or_other_account_then_not_listed(
    journal: Journal,
) -> None:
    await journal.actions("main", None, dry_run=True).intent(reduce_order(), "lb-dry")
    await journal.actions("other", None).intent(reduce_order(), "lb-other")

    assert await journal.pending_intents("main") == []
    assert [p.client_id for p in await journal.pending_intents("other")] == ["lb-other"]


async def test_resolve_intent_when_unknown_client_id_then_raises(journal: Journal) -> None:
    with pytest.raises(UnknownIntent):
        await journal.resolve_intent("nope", "failed", error="never reached the exchange")


async def test_resolve_intent_when_status_not_known_then_value_error(journal: Journal) -> None:
    await journal.actions("main", None).intent(reduce_order(), "lb-4")
    with pytest.raises(ValueError, match="maybe"):
        await journal.resolve_intent("lb-4", "maybe")


async def test_resolve_intent_when_unknown_then_not_pending_and_error_kept(
    journal: Journal,
) -> None:
    await journal.actions("main", None).intent(transfer_in(), "lb-5")
    await journal.resolve_intent("lb-5", ActionStatus.UNKNOWN, error="interrupted")

    assert await journal.pending_intents("main") == []


async def test_intent_when_client_id_reused_then_integrity_error(journal: Journal) -> None:
    recorder = journal.actions("main", None)
    await recorder.intent(reduce_order(), "lb-6")
    with pytest.raises(IntegrityError):
        await recorder.intent(reduce_order(), "lb-6")


async def test_result_when_intent_missing_then_row_written_with_result(journal: Journal) -> None:
    cycle_id = await journal.start_cycle("main", T0)
    order = reduce_order()
    await journal.actions("main", cycle_id).result(ActionOutcome(order, "lb-7", filled("lb-7")))

    [action] = await journal.cycle_actions(cycle_id)
    assert (action.client_id, action.status, action.exchange_id) == (
        "lb-7",
        ActionStatus.OK,
        "8389765519",
    )


async def test_recent_actions_when_many_then_newest_first_filtered_by_account(
    journal: Journal, clock: FakeClock
) -> None:
    for client_id, account in [("r1", "main"), ("r2", "alt"), ("r3", "main"), ("r4", "main")]:
        await journal.actions(account, None).intent(transfer_in(), client_id)
        clock.advance(timedelta(seconds=1))

    assert [a.client_id for a in await journal.recent_actions("main", limit=2)] == ["r4", "r3"]
    assert [a.client_id for a in await journal.recent_actions()] == ["r4", "r3", "r2", "r1"]
