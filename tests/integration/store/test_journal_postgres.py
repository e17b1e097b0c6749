"""PostgreSQL only: two journals (two engines, as two daemons would have) on one database.

On SQLite one write lock serializes every writer; on PostgreSQL two connections really
write at once, so what the journal reads and then writes must still come out whole.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import text

from bot.domain.outcomes import ActionOutcome
from bot.domain.targets import Target
from bot.store.journal import Journal
from tests.integration.store.builders import T0, snapshot, transfer_in
from tests.support.postgres import TestPostgres

CYCLES = 20


async def _cycles(journal: Journal, owner: str) -> list[int]:
    """`CYCLES` cycles of one account, each journaling a snapshot, an action and notes
    that name `owner`, interleaved with the other journal's."""
    ids = []
    for n in range(CYCLES):
        at = T0 + timedelta(seconds=n)
        cycle_id = await journal.start_cycle("main", at)
        await journal.record_snapshot(
            "main", snapshot(taken_at=at), Decimal(n), Decimal(1), None, None, cycle_id
        )
        recorder = journal.actions("main", cycle_id)
        client_id = f"{owner}-{n}"
        await recorder.intent(transfer_in(str(n + 1)), client_id)
        await asyncio.sleep(0)
        await recorder.result(ActionOutcome(transfer_in(str(n + 1)), client_id, None))
        await journal.finish_cycle(cycle_id, "ok", at + timedelta(seconds=1), [owner])
        ids.append(cycle_id)
    return ids


async def _controls(journal: Journal, owner: str) -> None:
    """The owner's commands arriving through both processes at once."""
    band = Target(Decimal(5), Decimal(4), Decimal(6))
    for n in range(CYCLES):
        await asyncio.gather(
            journal.set_paused("main", n % 2 == 0, owner),
            journal.set_target_override("main", None, band, owner),
            journal.set_target_override("main", "BTC/USDT:USDT", band, owner),
        )


async def test_journal_when_two_engines_write_cycles_at_once_then_each_cycle_whole(
    postgres: TestPostgres,
) -> None:
    url = postgres.url(postgres.empty_database())
    first = await Journal.open(url, clock=lambda: T0)
    second = await Journal.open(url, clock=lambda: T0)
    try:
        ids_first, ids_second, *_ = await asyncio.gather(
            _cycles(first, "first"),
            _cycles(second, "second"),
            _controls(first, "first"),
            _controls(second, "second"),
        )
        history = await first.history("main", limit=100)
        overrides = await second.target_overrides("main")
        async with first.engine.connect() as connection:
            override_rows = (
                await connection.execute(text("SELECT count(*) FROM target_overrides"))
            ).scalar_one()
            snapshot_cycles = (
                await connection.execute(text("SELECT cycle_id FROM account_snapshots"))
            ).all()
    finally:
        await second.close()
        await first.close()

    assert len(set(ids_first) | set(ids_second)) == 2 * CYCLES
    cycles = {cycle.id: cycle for cycle in history}
    for owner, ids in (("first", ids_first), ("second", ids_second)):
        for n, cycle_id in enumerate(ids):
            cycle = cycles[cycle_id]
            assert (cycle.status, cycle.notes) == ("ok", (owner,))
            (action,) = cycle.actions
            assert (action.client_id, action.amount) == (f"{owner}-{n}", Decimal(n + 1))
            assert action.status == "ok"
    assert sorted(row.cycle_id for row in snapshot_cycles) == sorted(ids_first + ids_second)
    assert set(overrides) == {None, "BTC/USDT:USDT"}
    assert override_rows == 2
