"""CycleScheduler on a real event loop: cycles start at once, and drain lets them finish."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bot.app.scheduler import CycleScheduler
from bot.app.service import AccountRuntime, AccountService
from bot.domain.models import AccountSnapshot, Side
from bot.domain.targets import Policy, Target, Targets
from bot.exchange.port import MarginResult, OrderRequest, OrderResult, TransferResult
from bot.exchange.sim.exchange import SimulatedExchange
from bot.exchange.sim.markets import binance_usdm_markets
from bot.store.journal import Journal
from bot.store.records import CycleStatus
from tests.support.postgres import BACKENDS, database_url

BTC = "BTC/USDT:USDT"


def utc_now() -> datetime:
    return datetime.now(UTC)


class SlowExchange:
    """The Exchange port over a SimulatedExchange whose snapshots take `delay` seconds."""

    def __init__(self, delay: float) -> None:
        self.venue = SimulatedExchange(
            markets=binance_usdm_markets(), clock=utc_now, derivatives=Decimal(1000), account="a"
        )
        self.venue.set_mark(BTC, Decimal(50000))
        self.venue.open_position(BTC, Side.LONG, Decimal("0.06"))
        self.name = self.venue.name
        self.delay = delay
        self.snapshot_started = asyncio.Event()
        self.snapshot_cancelled = asyncio.Event()

    async def fetch_snapshot(self, include_source: bool = True) -> AccountSnapshot:
        self.snapshot_started.set()
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.snapshot_cancelled.set()
            raise
        return await self.venue.fetch_snapshot(include_source)

    async def fetch_source(self, snapshot: AccountSnapshot) -> AccountSnapshot:
        return await self.venue.fetch_source(snapshot)

    async def transfer(
        self, currency: str, amount: Decimal, into_derivatives: bool, client_id: str
    ) -> TransferResult:
        return await self.venue.transfer(currency, amount, into_derivatives, client_id)

    async def adjust_margin(
        self, symbol: str, side: Side, amount: Decimal, add: bool, hedged: bool = False
    ) -> MarginResult:
        return await self.venue.adjust_margin(symbol, side, amount, add, hedged)

    async def create_order(self, request: OrderRequest) -> OrderResult:
        return await self.venue.create_order(request)

    async def fetch_order_by_client_id(
        self, symbol: str, client_order_id: str
    ) -> OrderResult | None:
        return await self.venue.fetch_order_by_client_id(symbol, client_order_id)

    async def close(self) -> None:
        await self.venue.close()


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


def account(exchange: SlowExchange, journal: Journal) -> AccountService:
    runtime = AccountRuntime(
        name="a",
        exchange=exchange,
        targets=Targets(account=Target(Decimal(3), Decimal("2.5"), Decimal("3.5"))),
        policy=Policy(),
        interval=timedelta(seconds=60),
    )
    return AccountService(runtime, journal, utc_now)


async def _drain(scheduler: CycleScheduler, grace: float) -> bool:
    finished = await scheduler.drain(grace)
    await asyncio.sleep(0.01)  # APScheduler 3 shuts down on the loop's next turn
    return finished


async def test_drain_when_cycle_running_then_it_finishes_and_is_journaled(
    journal: Journal,
) -> None:
    exchange = SlowExchange(delay=0.3)
    service = account(exchange, journal)
    scheduler = CycleScheduler([service])
    scheduler.start()
    await asyncio.wait_for(exchange.snapshot_started.wait(), timeout=5)

    finished = await _drain(scheduler, grace=5)

    assert finished
    assert not service.busy
    (cycle,) = await journal.history("a")
    assert cycle.status is CycleStatus.OK


async def test_drain_when_cycle_outlasts_grace_then_reports_unfinished(
    journal: Journal,
) -> None:
    exchange = SlowExchange(delay=1.0)
    service = account(exchange, journal)
    scheduler = CycleScheduler([service])
    scheduler.start()
    await asyncio.wait_for(exchange.snapshot_started.wait(), timeout=5)

    finished = await _drain(scheduler, grace=0.05)

    assert not finished
    # Shutdown cancels the cycle (on the loop's next turns), in the middle of its fetch.
    await asyncio.wait_for(exchange.snapshot_cancelled.wait(), timeout=5)
    # The cancelled cycle stays `running` for the next start to close as interrupted.
    (cycle,) = await journal.history("a")
    assert cycle.status is CycleStatus.RUNNING
