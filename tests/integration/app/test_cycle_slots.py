"""Cycles on a shared grid of slots (issue 12 §6): accounts whose first cycles were
spread over an interval (as the daemon spreads a lease hand-out) cycle together after
that, so their journal rows share transactions instead of one transaction per row."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bot.app.scheduler import CycleScheduler, SlottedInterval
from bot.app.service import AccountRuntime, AccountService
from bot.domain.models import Side
from bot.domain.targets import Policy, Target, Targets
from bot.exchange.sim.exchange import SimulatedExchange
from bot.exchange.sim.markets import binance_usdm_markets
from bot.store.journal import Journal
from tests.support.postgres import BACKENDS, database_url

BTC = "BTC/USDT:USDT"
ACCOUNTS = 20
INTERVAL = timedelta(seconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request, request.param, tmp_path / "levbot.sqlite")


@pytest.fixture
async def journal(db_url: str) -> AsyncIterator[Journal]:
    opened = await Journal.open(db_url)
    try:
        yield opened
    finally:
        await opened.close()


def _service(journal: Journal, index: int) -> AccountService:
    exchange = SimulatedExchange(
        markets=binance_usdm_markets(), clock=utc_now, derivatives=Decimal(10000),
        source=Decimal(5000), account=f"acct{index}",
    )  # fmt: skip
    exchange.set_mark(BTC, Decimal(50000))
    exchange.open_position(BTC, Side.LONG, Decimal("0.6"))  # 3x: in band, a steady cycle
    runtime = AccountRuntime(
        name=exchange.name, exchange=exchange,
        targets=Targets(Target(Decimal(3), Decimal("2.5"), Decimal("3.5"))),
        policy=Policy(), interval=INTERVAL,
    )  # fmt: skip
    return AccountService(runtime, journal, utc_now)


def _micros(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("interval", "slot"),
    [
        (timedelta(seconds=60), timedelta(seconds=1)),
        (timedelta(seconds=1.5), timedelta(seconds=0.75)),
        (timedelta(seconds=0.2), timedelta(seconds=0.2)),
    ],
)
def test_slotted_interval_when_first_run_off_grid_then_next_runs_on_slot_boundaries(
    interval: timedelta, slot: timedelta
) -> None:
    trigger = SlottedInterval(interval, timedelta(seconds=1))
    first = datetime(2026, 1, 1, 12, 0, 0, 123457, tzinfo=UTC)

    second = trigger.get_next_fire_time(first, first)
    assert second is not None
    third = trigger.get_next_fire_time(second, second)

    # On the grid from the second run, never sooner than an interval, at most a slot later.
    assert _micros(second) % _micros(EPOCH + slot) == 0
    assert interval <= second - first < interval + slot
    assert third == second + interval


async def test_scheduler_when_first_cycles_spread_then_later_rounds_share_journal_batches(
    journal: Journal,
) -> None:
    scheduler = CycleScheduler([])
    scheduler.start()
    services = [_service(journal, index) for index in range(ACCOUNTS)]
    try:
        # The daemon's hand-out: first cycles spread over most of an interval.
        for index, service in enumerate(services):
            scheduler.add(service, INTERVAL * 0.8 * index / ACCOUNTS)
        await _until(lambda: all(s.last_report is not None for s in services), seconds=10)
        batches, rows = journal.cycle_writes.batches, journal.cycle_writes.rows
        first_reports = {s.name: s.last_report for s in services}
        await _until(
            lambda: (
                all(s.last_report is not first_reports[s.name] for s in services)
                and journal.cycle_writes.rows - rows >= 4 * ACCOUNTS
            ),
            seconds=15,
        )
    finally:
        await scheduler.drain(5)
        await asyncio.sleep(0.01)  # APScheduler 3 shuts down on the loop's next turn
    written = journal.cycle_writes.rows - rows
    committed = journal.cycle_writes.batches - batches
    # Two later rounds at least (a start and an end row per cycle): the accounts cycle
    # together, a few transactions per round, where spread out each row had its own.
    assert written >= 4 * ACCOUNTS
    assert committed <= written / 5, (committed, written)


async def _until(done: object, seconds: float) -> None:
    assert callable(done)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not done():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)
