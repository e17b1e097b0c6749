"""WAL and busy_timeout in practice: the daemon and a CLI writing the same file at once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

from bot.domain.outcomes import ActionOutcome
from bot.domain.vocabulary import AlertLevel
from bot.store.journal import Journal
from tests.integration.store.builders import T0, snapshot, transfer_in


async def _cycle(journal: Journal, account: str, n: int) -> None:
    at = T0 + timedelta(seconds=n)
    cycle_id = await journal.start_cycle(account, at)
    taken = snapshot(account=account, taken_at=at)
    await journal.record_snapshot(account, taken, Decimal(n), Decimal(1), None, None, cycle_id)
    recorder = journal.actions(account, cycle_id)
    client_id = f"{account}-{n}"
    await recorder.intent(transfer_in("1.5"), client_id)
    await recorder.result(ActionOutcome(transfer_in("1.5"), client_id, None))
    await journal.enqueue_alert(AlertLevel.INFO, client_id)
    await journal.finish_cycle(cycle_id, "ok", at, [])


async def test_journal_when_two_processes_write_concurrently_then_nothing_lost(
    db_url: str,
) -> None:
    daemon = await Journal.open(db_url, clock=lambda: T0)
    cli = await Journal.open(db_url, clock=lambda: T0)
    try:
        await asyncio.gather(
            *(_cycle(daemon, "main", n) for n in range(25)),
            *(_cycle(cli, "alt", n) for n in range(25)),
            *(cli.set_paused("alt", n % 2 == 0, "cli") for n in range(10)),
        )
        history = await daemon.history(limit=100)
        activity = await cli.recent_activity("main", T0 + timedelta(hours=1))
        alerts = await daemon.due_alerts(T0 + timedelta(days=3650), limit=100)
    finally:
        await cli.close()
        await daemon.close()

    assert len(history) == 50
    assert all(len(c.actions) == 1 for c in history)
    assert activity.transferred_today == Decimal("37.5")
    assert len(alerts) == 50
