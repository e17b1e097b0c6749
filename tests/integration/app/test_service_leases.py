"""Fencing at the service: a process whose lease was taken sends nothing to the exchange.

On the session's real PostgreSQL (leases exist only there) with the simulated exchange;
the journal's fence is what the daemon sets (`bot.app.leasing.SharedLeases`).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bot.app.execute import run_plan
from bot.app.leasing import LeaseChanges, SharedLeases, SoleOwner
from bot.app.scheduler import CycleScheduler
from bot.app.service import AccountRuntime, AccountService
from bot.domain.models import Side
from bot.domain.planner import plan_rebalance
from bot.domain.targets import Policy, Target, Targets
from bot.domain.vocabulary import CycleStatus
from bot.exchange.sim.exchange import SimulatedExchange
from bot.exchange.sim.markets import binance_usdm_markets
from bot.store.journal import Journal
from bot.store.leases import TELEGRAM_LEASE, Fence, LeaseBook, LeaseLost, LeaseOwner
from tests.support.postgres import TestPostgres

BTC = "BTC/USDT:USDT"
ACCOUNT = "main"
BAND = Targets(account=Target(Decimal(3), Decimal("2.5"), Decimal("3.5")))
SHORT = timedelta(seconds=0.6)
LONG = timedelta(seconds=30)
A = LeaseOwner("A", None, "host-a", 1)
B = LeaseOwner("B", None, "host-b", 2)


def clock() -> datetime:
    return datetime.now(UTC)


def over_levered() -> SimulatedExchange:
    """5x against a 2.5-3.5 band, with a reserve to draw from: the cycle wants to act."""
    venue = SimulatedExchange(
        markets=binance_usdm_markets(),
        clock=clock,
        derivatives=Decimal(1000),
        source=Decimal(3000),
        account=ACCOUNT,
    )
    venue.set_mark(BTC, Decimal(50000))
    venue.open_position(BTC, Side.LONG, Decimal("0.1"))
    return venue


def service(venue: SimulatedExchange, journal: Journal) -> AccountService:
    runtime = AccountRuntime(ACCOUNT, venue, BAND, Policy(), timedelta(seconds=60))
    return AccountService(runtime, journal, clock)


def venue_writes(venue: SimulatedExchange) -> int:
    return len(venue.transfers) + len(venue.state().orders) + len(venue.state().stops)


@pytest.fixture
async def journal(postgres: TestPostgres) -> AsyncIterator[Journal]:
    opened = await Journal.open(postgres.url(postgres.empty_database()))
    try:
        yield opened
    finally:
        await opened.close()


async def held_by(book: LeaseBook, me: LeaseOwner, period: timedelta) -> dict[str, int]:
    await book.register(me, [ACCOUNT], period)
    return dict((await book.heartbeat(me, {}, [ACCOUNT], period)).held)


async def taken_over(book: LeaseBook) -> dict[str, int]:
    """A claims with a short lease and stops beating (paused); B takes the account."""
    held = await held_by(book, A, SHORT)
    await asyncio.sleep(SHORT.total_seconds() + 0.2)
    assert await held_by(book, B, LONG) == {ACCOUNT: 2}
    return held


async def test_cycle_when_lease_held_then_it_acts(journal: Journal) -> None:
    book = LeaseBook(journal.engine)
    journal.fence = Fence("A", epochs=await held_by(book, A, LONG))
    venue = over_levered()
    report = await service(venue, journal).run_cycle()
    assert report.status is CycleStatus.OK
    assert report.outcomes and venue_writes(venue) > 0


async def test_cycle_when_lease_taken_by_another_then_nothing_sent_and_service_retired(
    journal: Journal,
) -> None:
    book = LeaseBook(journal.engine)
    journal.fence = Fence("A", epochs=await taken_over(book))
    venue = over_levered()
    account = service(venue, journal)

    report = await account.run_cycle()

    assert report.status is CycleStatus.FAILED
    assert report.error is not None and "lease of main lost by A" in report.error
    assert account.retired
    assert venue_writes(venue) == 0
    assert await journal.recent_actions(ACCOUNT) == []
    again = await account.run_cycle()
    assert again.status is CycleStatus.SKIPPED  # and no cycle journaled for it
    assert len(await journal.history(ACCOUNT)) == 1


async def test_cycle_when_lease_about_to_expire_then_nothing_sent_but_still_driven(
    journal: Journal,
) -> None:
    book = LeaseBook(journal.engine)
    held = await held_by(book, A, LONG)
    journal.fence = Fence("A", margin=LONG + timedelta(seconds=1), epochs=held)
    venue = over_levered()
    account = service(venue, journal)
    report = await account.run_cycle()
    assert report.status is CycleStatus.FAILED
    assert not account.retired
    assert venue_writes(venue) == 0


async def test_run_plan_when_intent_refused_then_lease_lost_propagates_before_any_write(
    journal: Journal,
) -> None:
    book = LeaseBook(journal.engine)
    journal.fence = Fence("A", epochs=await taken_over(book))
    venue = over_levered()
    plan = plan_rebalance(await venue.fetch_snapshot(), BAND, Policy(), clock())
    assert plan.actions
    ids = (f"lb{n}" for n in itertools.count())

    with pytest.raises(LeaseLost):
        await run_plan(venue, plan, lambda: next(ids), journal.actions(ACCOUNT, None))

    assert venue_writes(venue) == 0


async def test_shared_leases_when_beating_then_fence_follows_what_is_held(
    journal: Journal,
) -> None:
    leases = SharedLeases(LeaseBook(journal.engine), A, [ACCOUNT, "other"], LONG)
    assert await leases.beat() == LeaseChanges()  # the first beat only joins
    changes = await leases.beat()
    assert (changes.gained, changes.leader) == ((ACCOUNT, "other"), True)
    assert leases.fence is not None
    assert leases.fence.epochs == {ACCOUNT: 1, "other": 1, TELEGRAM_LEASE: 1}
    await leases.release(["other"])
    assert leases.fence.epochs == {ACCOUNT: 1, TELEGRAM_LEASE: 1}
    assert (await leases.beat()).gained == ("other",)  # free again: taken back, epoch 2
    assert leases.fence.epochs == {ACCOUNT: 1, "other": 2, TELEGRAM_LEASE: 1}


async def test_sole_owner_when_sqlite_then_every_account_at_once_and_no_fence() -> None:
    sole = SoleOwner(["a", "b"])
    first, second = await sole.beat(), await sole.beat()
    assert (first.gained, first.leader, sole.fence) == (("a", "b"), True, None)
    assert (second.gained, second.lost, second.surplus, second.leader) == ((), (), (), True)


async def test_scheduler_when_account_added_then_cycles_and_when_removed_then_stops(
    tmp_path: Path,
) -> None:
    journal = await Journal.open(f"sqlite:///{tmp_path / 'journal.sqlite'}")
    scheduler = CycleScheduler([])
    scheduler.start()
    try:
        account = service(over_levered(), journal)
        scheduler.add(account)  # a lease won while running
        for _ in range(100):
            if account.last_report is not None:
                break
            await asyncio.sleep(0.05)
        assert account.last_report is not None
        assert scheduler.remove(ACCOUNT) is account  # the lease lost or handed back
        assert scheduler.services == []
        await account.retire()
        assert (await account.run_cycle()).status is CycleStatus.SKIPPED
        assert len(await journal.history(ACCOUNT)) == 1
    finally:
        await scheduler.drain(1)
        await journal.close()
