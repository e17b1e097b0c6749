"""Daemon runs and cycles: start, finish, history, last successful cycle."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from bot.domain.outcomes import ActionOutcome
from bot.store.journal import Journal
from bot.store.records import ActionStatus, CycleStatus
from tests.integration.store.builders import T0, reduce_order, transfer_in


async def test_start_run_when_ended_then_stop_time_and_reason_kept(journal: Journal) -> None:
    run_id = await journal.start_run(pid=4242, version="0.1.0", at=T0)
    cycle_id = await journal.start_cycle("main", T0, run_id=run_id)
    await journal.end_run(run_id, "SIGTERM", at=T0 + timedelta(hours=1))
    later_cycle = await journal.start_cycle("main", T0 + timedelta(hours=2))

    async with journal.engine.connect() as connection:
        run = (
            await connection.execute(text("SELECT pid, version, exit_reason FROM daemon_runs"))
        ).one()
        cycle_runs = (
            await connection.execute(text("SELECT id, run_id FROM cycles ORDER BY id"))
        ).all()

    assert tuple(run) == (4242, "0.1.0", "SIGTERM")
    assert [tuple(r) for r in cycle_runs] == [(cycle_id, run_id), (later_cycle, None)]


async def test_finish_cycle_when_read_back_then_status_notes_error_kept(journal: Journal) -> None:
    cycle_id = await journal.start_cycle("main", T0)
    notes = ["orders wait for cooldown", "line one\nline two", "ünïcode ✓"]
    await journal.finish_cycle(cycle_id, "failed", T0 + timedelta(seconds=3), notes, "Timeout")

    [cycle] = await journal.history()

    assert (cycle.id, cycle.account, cycle.status) == (cycle_id, "main", CycleStatus.FAILED)
    assert (cycle.started_at, cycle.finished_at) == (T0, T0 + timedelta(seconds=3))
    assert (cycle.notes, cycle.error) == (tuple(notes), "Timeout")


async def test_finish_cycle_when_status_unknown_then_value_error(journal: Journal) -> None:
    cycle_id = await journal.start_cycle("main", T0)
    with pytest.raises(ValueError, match="finished-ish"):
        await journal.finish_cycle(cycle_id, "finished-ish", T0, [])


async def test_history_when_many_cycles_then_newest_first_with_their_actions(
    journal: Journal,
) -> None:
    ids = []
    for i in range(4):
        account = "alt" if i == 2 else "main"
        ids.append(await journal.start_cycle(account, T0 + timedelta(minutes=i)))
    recorder = journal.actions("main", ids[1])
    await recorder.intent(transfer_in(), "a")
    await recorder.result(ActionOutcome(transfer_in(), "a", None))
    await recorder.intent(reduce_order(), "b")

    newest = await journal.history(limit=2)
    mains = await journal.history("main")

    assert [c.id for c in newest] == [ids[3], ids[2]]
    assert [c.id for c in mains] == [ids[3], ids[1], ids[0]]
    assert [(a.client_id, a.status) for a in mains[1].actions] == [
        ("a", ActionStatus.OK),
        ("b", ActionStatus.PENDING),
    ]
    assert mains[0].status is CycleStatus.RUNNING
    assert mains[0].actions == ()


async def test_last_successful_cycle_when_mixed_statuses_then_newest_good_finish(
    journal: Journal,
) -> None:
    finishes = [
        ("main", "ok", 1),
        ("main", "dry_run", 2),
        ("main", "failed", 3),
        ("alt", "ok", 4),
        ("alt", "halted", 5),
    ]
    for account, status, minutes in finishes:
        cycle_id = await journal.start_cycle(account, T0)
        await journal.finish_cycle(cycle_id, status, T0 + timedelta(minutes=minutes), [])
    await journal.start_cycle("main", T0 + timedelta(minutes=9))  # still running

    assert await journal.last_successful_cycle("main") == T0 + timedelta(minutes=2)
    assert await journal.last_successful_cycle("alt") == T0 + timedelta(minutes=4)
    assert await journal.last_successful_cycle() == T0 + timedelta(minutes=4)
    assert await journal.last_successful_cycle("never") is None
