"""`recent_activity`: the daily transfer cap and the order cooldown, from the journal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from bot.domain.actions import Action
from bot.domain.outcomes import ActionOutcome
from bot.exchange.port import TransferResult
from bot.store.journal import Journal
from tests.integration.store.builders import reduce_order, transfer_in, transfer_out

NOW = datetime(2024, 5, 19, 15, 30, tzinfo=UTC)
MIDNIGHT = datetime(2024, 5, 19, tzinfo=UTC)


async def _journal(
    journal: Journal,
    action: Action,
    client_id: str,
    at: datetime,
    error: str | None = None,
    account: str = "main",
    dry_run: bool = False,
) -> None:
    await journal.record_intent(account, None, action, client_id, dry_run, at=at)
    receipt = (
        TransferResult(
            transfer_id=client_id, currency="USDT", amount=action.amount, into_derivatives=True
        )
        if error is None
        else None
    )
    await journal.record_result(
        account, None, ActionOutcome(action, client_id, receipt, error), dry_run, at=at
    )


async def test_recent_activity_when_transfers_today_then_real_ins_that_may_have_happened_summed(
    journal: Journal,
) -> None:
    await _journal(journal, transfer_in("100.25"), "t1", MIDNIGHT)
    await _journal(journal, transfer_in("49.75"), "t2", NOW - timedelta(minutes=1))
    await _journal(journal, transfer_in("1000"), "yesterday", MIDNIGHT - timedelta(microseconds=1))
    await _journal(journal, transfer_in("7"), "failed", NOW, error="TemporaryError: timeout")
    await _journal(journal, transfer_in("8"), "dry", NOW, dry_run=True)
    await _journal(journal, transfer_out("9"), "out", NOW)
    await _journal(journal, transfer_in("10"), "other", NOW, account="other")
    await _journal(journal, transfer_in("11"), "later", NOW + timedelta(minutes=1))
    # Interrupted: the transfer may well have happened, so the cap counts it.
    await journal.record_intent("main", None, transfer_in("12"), "pending", at=NOW)
    await journal.record_intent("main", None, transfer_in("13"), "unknown", at=NOW)
    await journal.resolve_intent("unknown", "unknown", error="interrupted")

    activity = await journal.recent_activity("main", NOW)

    assert activity.transferred_today == Decimal("175.00")  # 100.25 + 49.75 + 12 + 13


async def test_recent_activity_when_now_not_utc_then_day_starts_at_utc_midnight(
    journal: Journal,
) -> None:
    # 01:30 in UTC+03:00 is still the previous UTC day (22:30).
    await _journal(journal, transfer_in("5"), "before", datetime(2024, 5, 18, 21, 0, tzinfo=UTC))
    await _journal(journal, transfer_in("3"), "after", datetime(2024, 5, 18, 0, 0, tzinfo=UTC))
    now = datetime(2024, 5, 19, 1, 30, tzinfo=timezone(timedelta(hours=3)))

    activity = await journal.recent_activity("main", now)

    assert activity.transferred_today == Decimal("8")


async def test_recent_activity_when_orders_then_last_successful_order_per_scope(
    journal: Journal,
) -> None:
    cross_first = NOW - timedelta(minutes=30)
    cross_last = NOW - timedelta(minutes=4)
    isolated = NOW - timedelta(minutes=10)
    for client_id, scope, at, error in [
        ("o1", "cross", cross_first, None),
        ("o2", "cross", cross_last, None),
        ("o3", "cross", NOW - timedelta(minutes=1), "InvalidOrder: min notional"),
        ("o4", "ETH/USDT:USDT", isolated, None),
    ]:
        order = reduce_order(scope=scope)
        await journal.record_intent("main", None, order, client_id, at=at)
        await journal.record_result(
            "main", None, ActionOutcome(order, client_id, None, error), at=at
        )
    await journal.record_intent("main", None, reduce_order(scope="BTC"), "o5", dry_run=True, at=NOW)
    await journal.record_result(
        "main", None, ActionOutcome(reduce_order(scope="BTC"), "o5", None), dry_run=True, at=NOW
    )

    activity = await journal.recent_activity("main", NOW)

    assert activity.last_order_at == {"cross": cross_last, "ETH/USDT:USDT": isolated}
    assert all(at.tzinfo is UTC for at in activity.last_order_at.values())
    assert activity.transferred_today == 0


async def test_recent_activity_when_journal_empty_then_nothing(journal: Journal) -> None:
    activity = await journal.recent_activity("main", NOW)

    assert (activity.transferred_today, activity.last_order_at) == (Decimal(0), {})
