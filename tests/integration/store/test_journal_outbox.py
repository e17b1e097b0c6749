"""The alert outbox: oldest first, failed alerts wait for their retry, sent ones leave."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from bot.domain.vocabulary import AlertLevel
from bot.store.journal import Journal
from tests.integration.store.builders import T0, FakeClock


async def test_due_alerts_when_queued_then_oldest_first_up_to_limit(
    journal: Journal, clock: FakeClock
) -> None:
    ids = []
    for i in range(4):
        ids.append(await journal.enqueue_alert(AlertLevel.INFO, f"alert {i}"))
        clock.advance(timedelta(seconds=1))

    due = await journal.due_alerts(clock.now, limit=3)

    assert [a.id for a in due] == ids[:3]
    assert [a.text for a in due] == ["alert 0", "alert 1", "alert 2"]
    assert due[0].created_at == T0
    assert (due[0].attempts, due[0].sent_at, due[0].last_error) == (0, None, None)


async def test_mark_alert_failed_when_retry_later_then_it_and_newer_alerts_wait(
    journal: Journal, clock: FakeClock
) -> None:
    first = await journal.enqueue_alert(AlertLevel.CRITICAL, "EMERGENCY")
    second = await journal.enqueue_alert(AlertLevel.INFO, "rebalanced")
    retry_at = T0 + timedelta(seconds=30)

    await journal.mark_alert_failed(first, "TimedOut: api.telegram.org", retry_at)
    before_retry = await journal.due_alerts(T0 + timedelta(seconds=29), limit=10)
    at_retry = await journal.due_alerts(retry_at, limit=10)

    # Alerts go out in order: the newer one waits behind the held-back one.
    assert before_retry == []
    assert [a.id for a in at_retry] == [first, second]
    assert (at_retry[0].attempts, at_retry[0].last_error) == (1, "TimedOut: api.telegram.org")
    assert at_retry[0].next_attempt_at == retry_at


async def test_mark_alert_sent_when_sent_then_never_due_again(
    journal: Journal, clock: FakeClock
) -> None:
    alert = await journal.enqueue_alert(AlertLevel.WARNING, "exchange unreachable")
    await journal.mark_alert_failed(alert, "RetryAfter 3", T0 + timedelta(seconds=3))
    await journal.mark_alert_sent(alert, T0 + timedelta(seconds=4))

    assert await journal.due_alerts(T0 + timedelta(days=1), limit=10) == []


async def test_due_alerts_when_reopened_then_unsent_alerts_still_queued(
    db_url: str, clock: FakeClock
) -> None:
    first = await Journal.open(db_url, clock=clock)
    await first.enqueue_alert(AlertLevel.CRITICAL, "sent before the crash")
    unsent = await first.enqueue_alert(AlertLevel.CRITICAL, "queued while Telegram was down")
    await first.mark_alert_sent(1, T0)
    await first.close()

    second = await Journal.open(db_url, clock=clock)
    try:
        due = await second.due_alerts(T0, limit=10)
    finally:
        await second.close()

    assert [(a.id, a.text) for a in due] == [(unsent, "queued while Telegram was down")]


async def test_enqueue_alert_when_queued_then_logged_at_once_with_level_on_one_line(
    journal: Journal, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="bot.store.outbox"):
        await journal.enqueue_alert(
            AlertLevel.WARNING, "[paper] exchange unreachable\nsince 3 cycles"
        )
        await journal.enqueue_alert(AlertLevel.CRITICAL, "[paper] EMERGENCY")

    lines = [r for r in caplog.records if r.name == "bot.store.outbox"]
    assert [r.getMessage() for r in lines] == [
        "ALERT queued [warning] [paper] exchange unreachable | since 3 cycles",
        "ALERT queued [critical] [paper] EMERGENCY",
    ]
    # Never below INFO, and a critical alert is not hidden by a WARNING-level log filter.
    assert [r.levelno for r in lines] == [logging.WARNING, logging.CRITICAL]


async def test_alert_deliveries_when_recorded_per_chat_then_read_back_and_kept_once(
    journal: Journal, clock: FakeClock
) -> None:
    first = await journal.enqueue_alert(AlertLevel.INFO, "one")
    second = await journal.enqueue_alert(AlertLevel.INFO, "two")

    await journal.record_alert_delivery(first, 4242, T0)
    await journal.record_alert_delivery(first, -100200, T0)
    await journal.record_alert_delivery(first, 4242, T0 + timedelta(seconds=1))  # again: no-op

    delivered = await journal.alert_deliveries([first, second])
    assert delivered == {first: {4242, -100200}, second: set()}
