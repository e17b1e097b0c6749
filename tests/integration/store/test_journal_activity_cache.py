"""Recent activity is kept per account: another account's actions (or its takeover)
meanwhile do not throw away a read. With thousands of accounts taken over in one
hand-out, every read overlapped some other account's reconciliation, so none was kept
and every account read again next round (issue 12 §6)."""

from __future__ import annotations

import asyncio

from bot.store.journal import Journal
from tests.integration.store.builders import T0
from tests.integration.store.test_journal_batching import _data, statements


async def test_recent_activity_when_another_account_forgotten_meanwhile_then_read_kept(
    journal: Journal,
) -> None:
    # "b" is taken over (its kept activity dropped) while "a"'s activity is being read.
    await asyncio.gather(
        journal.recent_activity("a", T0), journal.close_interrupted_cycles("b", T0)
    )
    with statements(journal) as seen:
        await journal.recent_activity("a", T0)

    assert _data(seen) == 0, seen


async def test_recent_activity_when_the_same_account_forgotten_meanwhile_then_read_again(
    journal: Journal,
) -> None:
    await asyncio.gather(
        journal.recent_activity("a", T0), journal.close_interrupted_cycles("a", T0)
    )
    with statements(journal) as seen:
        await journal.recent_activity("a", T0)

    assert _data(seen) > 0, seen
