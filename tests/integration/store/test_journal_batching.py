"""A thousand accounts in one process: cycle rows committed together, snapshots kept on a
change or a heartbeat, the owner's controls and recent activity read once, and never
more sessions than the pool holds."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import IntegrityError

from bot.domain.outcomes import ActionOutcome
from bot.domain.targets import Target
from bot.domain.vocabulary import CycleStatus
from bot.store.engine import build_engine
from bot.store.journal import Journal
from tests.integration.store.builders import T0, FakeClock, snapshot, transfer_in


@contextmanager
def statements(journal: Journal) -> Iterator[Counter[str]]:
    """The SQL statements `journal` sends meanwhile, by their first two words."""
    seen: Counter[str] = Counter()

    def count(*args: Any) -> None:
        words = str(args[2]).split()
        seen[" ".join(words[:2]).upper()] += 1

    engine = journal.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _data(seen: Counter[str]) -> int:
    """Statements that read or write rows (not BEGIN, COMMIT, pragmas or pings)."""
    return sum(n for s, n in seen.items() if s.split()[0] in {"SELECT", "INSERT", "UPDATE"})


async def _steady_cycle(journal: Journal, account: str) -> int:
    cycle_id = await journal.start_cycle(account, T0)
    taken = snapshot(account=account)
    await journal.record_snapshot(
        account, taken, Decimal(10), Decimal(30), Decimal(3), None, cycle_id
    )
    await journal.paused_accounts()
    await journal.target_overrides(account)
    await journal.recent_activity(account, T0)
    await journal.finish_cycle(cycle_id, CycleStatus.OK, T0)
    return cycle_id


async def test_cycle_writes_when_many_cycles_at_once_then_few_statements_and_every_row_kept(
    journal: Journal,
) -> None:
    accounts = [f"acct{n}" for n in range(200)]
    await asyncio.gather(*(_steady_cycle(journal, a) for a in accounts))  # first: all read
    with statements(journal) as seen:
        ids = await asyncio.gather(*(_steady_cycle(journal, a) for a in accounts))

    assert len(set(ids)) == 200
    # Cycle rows in one INSERT and one UPDATE (or a few), no snapshot (nothing changed),
    # nothing read (controls and activity are in memory).
    assert _data(seen) <= 6, seen
    history = await journal.history(limit=1000)
    assert len(history) == 400
    assert {c.status for c in history} == {CycleStatus.OK}
    assert {c.id for c in history} >= set(ids)


async def test_start_cycle_when_it_returns_then_another_process_reads_the_row(
    journal: Journal, db_url: str
) -> None:
    cycle_id = await journal.start_cycle("main", T0)
    other = await Journal.open(db_url, clock=lambda: T0)
    try:
        running = await other.history("main")
        await journal.finish_cycle(cycle_id, CycleStatus.OK, T0, ["steady"])
        finished = await other.history("main")
    finally:
        await other.close()
    assert [(c.id, c.status) for c in running] == [(cycle_id, CycleStatus.RUNNING)]
    assert [(c.id, c.status, c.notes) for c in finished] == [
        (cycle_id, CycleStatus.OK, ("steady",))
    ]


async def test_cycle_writes_when_one_row_refused_then_only_its_caller_fails(
    journal: Journal,
) -> None:
    results = await asyncio.gather(
        *(journal.start_cycle(f"ok{n}", T0) for n in range(5)),
        journal.start_cycle("bad", T0, run_id=987654),  # no such daemon run
        return_exceptions=True,
    )
    assert all(isinstance(r, int) for r in results[:5])
    assert isinstance(results[5], IntegrityError)
    assert len(await journal.history(limit=100)) == 5


async def test_cycle_writes_when_one_account_twice_in_a_batch_then_both_rows_their_own_id(
    journal: Journal,
) -> None:
    first, second = await asyncio.gather(
        journal.start_cycle("main", T0), journal.start_cycle("main", T0 + timedelta(seconds=1))
    )
    await journal.finish_cycle(second, CycleStatus.FAILED, T0, error="second")
    by_id = {c.id: c for c in await journal.history("main")}
    assert by_id[first].status is CycleStatus.RUNNING
    assert by_id[second].status is CycleStatus.FAILED and by_id[second].error == "second"
    assert by_id[second].started_at == T0 + timedelta(seconds=1)


async def test_record_snapshot_when_unchanged_then_kept_again_only_at_the_heartbeat(
    journal: Journal,
) -> None:
    def record(minutes: int, wallet: str = "1000.123456789") -> Any:
        taken = snapshot(taken_at=T0 + timedelta(minutes=minutes), wallet=wallet)
        return journal.record_snapshot("main", taken, Decimal(10), Decimal(30), None, None)

    first = await record(0)
    assert await record(1) == first  # the same figures: not stored again
    assert await record(2, wallet="1000.2") == first  # within 0.1%
    moved = await record(3, wallet="1002")  # beyond it
    assert moved != first
    beat = await record(3 + 5)  # the heartbeat
    kept = await journal.snapshots_since("main", T0)
    assert [s.id for s in kept] == [first, moved, beat]


async def test_record_snapshot_when_a_position_changes_size_then_kept(journal: Journal) -> None:
    taken = snapshot()
    first = await journal.record_snapshot("main", taken, Decimal(10), Decimal(30), None, None)
    smaller = replace(taken.positions[0], contracts=Decimal("0.122"))
    changed = replace(taken, positions=(smaller, *taken.positions[1:]))
    second = await journal.record_snapshot("main", changed, Decimal(10), Decimal(30), None, None)
    assert second != first
    assert (await journal.latest_snapshots())["main"].positions[0].contracts == (Decimal("0.122"))


async def test_controls_when_changed_here_then_seen_at_once_and_read_once_meanwhile(
    journal: Journal,
) -> None:
    assert await journal.paused_accounts() == set()
    with statements(journal) as seen:
        for _ in range(50):
            await journal.paused_accounts()
            await journal.target_overrides("main")
    assert _data(seen) == 0
    await journal.set_paused("main", True, "owner")
    target = Target(Decimal(4), Decimal(3), Decimal(5))
    await journal.set_target_override("main", None, target, "owner")
    assert await journal.paused_accounts() == {"main"}
    assert await journal.target_overrides("main") == {None: target}


async def test_controls_when_changed_by_another_process_then_seen_within_max_age(
    journal: Journal, db_url: str
) -> None:
    journal.controls_max_age = 0.2
    assert await journal.paused_accounts() == set()
    other = await Journal.open(db_url, clock=lambda: T0)
    try:
        await other.set_paused("main", True, "cli")
    finally:
        await other.close()
    await asyncio.sleep(0.25)
    assert await journal.paused_accounts() == {"main"}


async def test_recent_activity_when_unchanged_then_read_once_and_again_after_a_write(
    journal: Journal, clock: FakeClock
) -> None:
    first = await journal.recent_activity("main", T0)
    with statements(journal) as seen:
        assert await journal.recent_activity("main", T0 + timedelta(seconds=5)) == first
    assert _data(seen) == 0
    recorder = journal.actions("main", None)
    await recorder.intent(transfer_in("7"), "c1")
    assert (await journal.recent_activity("main", T0)).transferred_today == Decimal(7)
    await recorder.result(ActionOutcome.failed(transfer_in("7"), "c1", "refused"))
    assert (await journal.recent_activity("main", T0)).transferred_today == Decimal(0)


async def test_recent_activity_when_the_account_is_taken_over_then_read_again(
    journal: Journal, db_url: str
) -> None:
    assert (await journal.recent_activity("main", T0)).transferred_today == Decimal(0)
    other = await Journal.open(db_url, clock=lambda: T0)
    try:
        recorder = other.actions("main", None)
        await recorder.intent(transfer_in("7"), "c1")
        await recorder.result(ActionOutcome(transfer_in("7"), "c1", None))
    finally:
        await other.close()
    # The daemon's first cycle on an account (start-up, or a lease taken back) closes the
    # cycles a previous owner left running: what it knew of the account is read again.
    await journal.close_interrupted_cycles("main", T0)
    assert (await journal.recent_activity("main", T0)).transferred_today == Decimal(7)


async def test_sessions_when_more_at_once_than_the_pool_holds_then_none_times_out(
    journal: Journal, db_url: str
) -> None:
    sessions = 300
    # A pool of 3 whose callers give up after 0.2 s: far more concurrent sessions than
    # that used to fail with "QueuePool limit of size 1 overflow 2 reached".
    engine = build_engine(db_url, pool_size=1, max_overflow=2, pool_timeout=0.2)
    small = Journal(engine, lambda: T0)
    try:

        async def work(n: int) -> None:
            recorder = small.actions(f"acct{n % 50}", None)
            await recorder.intent(transfer_in("1"), f"c{n}")
            await recorder.result(ActionOutcome(transfer_in("1"), f"c{n}", None))
            await small.history(f"acct{n % 50}", limit=5)

        await asyncio.gather(*(work(n) for n in range(sessions)))
    finally:
        await small.close()
    assert len(await journal.recent_actions(limit=1000)) == sessions


async def test_record_snapshot_when_held_back_and_the_cycle_acts_then_stored_before_the_intent(
    journal: Journal,
) -> None:
    first = await journal.record_snapshot("main", snapshot(), Decimal(10), Decimal(30), None, None)
    cycle_id = await journal.start_cycle("main", T0 + timedelta(minutes=1))
    same = snapshot(taken_at=T0 + timedelta(minutes=1))
    held = await journal.record_snapshot(
        "main", same, Decimal(10), Decimal(30), None, None, cycle_id
    )
    assert held == first  # unchanged: held back
    await journal.actions("main", cycle_id).intent(transfer_in("5"), "c1")
    kept = await journal.snapshots_since("main", T0)
    assert [s.cycle_id for s in kept] == [None, cycle_id]
    assert kept[1].taken_at == T0 + timedelta(minutes=1)
