"""The collateral source wallet is read only when a plan may draw on it (issue 12 §2).

A steady cycle plans on a snapshot without the source wallet (`source_read` False); a
plan in which a scope must de-lever is never sent as it is: the service reads the source
and plans again. Counted at the loopback venue with real ccxt, and on the simulator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bot.app.service import AccountRuntime, AccountService, CycleReport
from bot.clock import utc_now
from bot.domain.actions import ActionKind, Rule
from bot.domain.models import AccountSnapshot, Side
from bot.domain.planner import (
    SOURCE_NOT_READ_NOTE,
    SOURCE_UNKNOWN_NOTE,
    needs_source,
    plan_rebalance,
)
from bot.domain.summary import account_metrics
from bot.domain.targets import Policy, Target, Targets
from bot.domain.vocabulary import CycleStatus
from bot.exchange.port import Exchange
from bot.exchange.sim.exchange import SimulatedExchange
from bot.exchange.sim.markets import binance_usdm_markets
from bot.store.journal import Journal
from tests.integration.exchange.loopback import LoopbackVenue
from tests.integration.exchange.test_hyperliquid import hyperliquid_adapter, serve_hyperliquid
from tests.integration.exchange.venues import adapter_for, serve

BTC = "BTC/USDT:USDT"
T0 = datetime(2021, 5, 19, 13, 0, tzinfo=UTC)
# At most this many requests in a steady cycle (in band, nothing to do), per venue.
STEADY_BUDGET = {"binanceusdm": 1, "bybit": 2, "okx": 2, "hyperliquid": 2}
ACCOUNT = "/fapi/v3/account"
SPOT = "/api/v3/account"
TRANSFER = "/sapi/v1/asset/transfer"
ORDER = "/fapi/v1/order"
POLICY = Policy(cooldown=timedelta(minutes=5))


@pytest.fixture
async def venue() -> AsyncIterator[LoopbackVenue]:
    server = LoopbackVenue()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    opened = await Journal.open(f"sqlite:///{tmp_path / 'levbot.sqlite'}", clock=utc_now)
    try:
        yield opened
    finally:
        await opened.close()


def service(
    exchange: Exchange, journal: Journal, targets: Targets, clock: object = utc_now
) -> AccountService:
    runtime = AccountRuntime(
        name="main", exchange=exchange, targets=targets, policy=POLICY,
        interval=timedelta(seconds=30),
    )  # fmt: skip
    return AccountService(runtime, journal, clock)  # type: ignore[arg-type]


def around(leverage: Decimal) -> Targets:
    """A band the account sits well inside."""
    return Targets(Target(leverage, leverage / 2, leverage * 2))


def sent(report: CycleReport) -> list[ActionKind]:
    return [o.action.kind for o in report.outcomes]


# -- at the loopback venue, real ccxt ------------------------------------------------


@pytest.mark.parametrize("exchange_id", list(STEADY_BUDGET))
async def test_cycle_when_in_band_then_steady_cycle_within_request_budget(
    venue: LoopbackVenue, journal: Journal, exchange_id: str
) -> None:
    if exchange_id == "hyperliquid":
        serve_hyperliquid(venue)
        exchange = hyperliquid_adapter(venue)
    else:
        serve(venue, exchange_id)
        exchange = adapter_for(exchange_id, venue)
    async with exchange:
        leverage = account_metrics(await exchange.fetch_snapshot()).leverage
        assert leverage is not None
        bot = service(exchange, journal, around(leverage))
        await bot.run_cycle()  # the first settles start-up (nothing pending)
        venue.forget()
        reports = [await bot.run_cycle() for _ in range(3)]

    assert [r.status for r in reports] == [CycleStatus.OK] * 3
    assert all(r.plan is not None and r.plan.empty for r in reports)
    assert len(venue.requests) == 3 * STEADY_BUDGET[exchange_id]


async def test_cycle_when_binance_out_of_band_then_source_read_and_transfer_not_order(
    venue: LoopbackVenue, journal: Journal
) -> None:
    # The recorded account runs 23x; target 20 (band 15-22): the gap to 20 is
    # 607.56 / 20 - 26.27 = 4.11 USDT, and the spot wallet holds 500.
    serve(venue, "binanceusdm")
    async with adapter_for("binanceusdm", venue) as exchange:
        bot = service(exchange, journal, Targets(Target(Decimal(20), Decimal(15), Decimal(22))))
        report = await bot.run_cycle()

    assert report.status is CycleStatus.OK
    assert sent(report) == [ActionKind.TRANSFER_IN]
    assert venue.calls(SPOT) and venue.calls(TRANSFER, "POST")
    assert not venue.calls(ORDER, "POST")


async def test_cycle_when_binance_source_read_fails_when_needed_then_source_unknown_rules(
    venue: LoopbackVenue, journal: Journal
) -> None:
    serve(venue, "binanceusdm")
    venue.reply("GET", SPOT, {"code": -1000, "msg": "An unknown error occured"}, status=500)
    targets = Targets(Target(Decimal(20), Decimal(15), Decimal(22)))
    async with adapter_for("binanceusdm", venue) as exchange:
        # Today's rule, on a full snapshot whose source read failed: no order, wait.
        full = await exchange.fetch_snapshot()
        today = plan_rebalance(full, targets, POLICY, full.taken_at)
        venue.forget()
        report = await service(exchange, journal, targets).run_cycle()

    assert full.source_unknown and today.empty
    assert any(SOURCE_UNKNOWN_NOTE in d.notes for d in today.decisions)
    assert report.plan is not None and report.plan.empty
    assert [d.notes for d in report.plan.decisions] == [d.notes for d in today.decisions]
    assert venue.calls(SPOT)
    assert not venue.calls(ORDER, "POST") and not venue.calls(TRANSFER, "POST")


# -- on the simulator ----------------------------------------------------------------


class CountingExchange:
    """The Exchange port over a SimulatedExchange, counting snapshot and source reads."""

    def __init__(self, venue: SimulatedExchange) -> None:
        self.venue = venue
        self.name = venue.name
        self.reads: list[str] = []

    async def fetch_snapshot(self, include_source: bool = True) -> AccountSnapshot:
        self.reads.append("snapshot+source" if include_source else "snapshot")
        return await self.venue.fetch_snapshot(include_source)

    async def fetch_source(self, snapshot: AccountSnapshot) -> AccountSnapshot:
        self.reads.append("source")
        return await self.venue.fetch_source(snapshot)

    def __getattr__(self, name: str) -> object:
        return getattr(self.venue, name)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def sim(clock: Clock, mark: str) -> SimulatedExchange:
    """1000 USDT, 0.06 BTC long from 50000 (3x), 5000 USDT in the spot wallet."""
    venue = SimulatedExchange(
        markets=binance_usdm_markets(), clock=clock, derivatives=Decimal(1000),
        source=Decimal(5000), account="main",
    )  # fmt: skip
    venue.set_mark(BTC, Decimal(50000))
    venue.open_position(BTC, Side.LONG, Decimal("0.06"))
    venue.set_mark(BTC, Decimal(mark))
    return venue


BAND = Targets(Target(Decimal(3), Decimal("2.5"), Decimal("3.5")))


@pytest.mark.parametrize(
    ("mark", "rule"),
    [("45000", Rule.DELEVER), ("33500", Rule.EMERGENCY)],
    ids=["out-of-band", "emergency"],
)
async def test_cycle_when_source_unread_and_delever_then_read_and_collateral_not_orders(
    journal: Journal, mark: str, rule: Rule
) -> None:
    # 45000: E = 1000 - 300 = 700, N = 2700, L = 3.86. 33500: E = 10, MR = 8.04 / 10.
    clock = Clock()
    venue = sim(clock, mark)
    exchange = CountingExchange(venue)
    unread = venue.snapshot(include_source=False)
    first = plan_rebalance(unread, BAND, POLICY, clock.now)
    report = await service(exchange, journal, BAND, clock).run_cycle()

    # Planned on the unread source, nothing would be sent, and the plan says why.
    assert first.empty and needs_source(unread, first)
    assert {d.rule for d in first.decisions} == {rule}
    assert SOURCE_NOT_READ_NOTE in first.decisions[0].notes
    # The cycle read the source, and the owner's collateral closed the gap: no order.
    assert exchange.reads[:2] == ["snapshot", "source"]
    assert sent(report) == [ActionKind.TRANSFER_IN]
    assert venue.positions()[0].contracts == Decimal("0.06")


async def test_cycle_when_in_band_on_sim_then_source_never_read(journal: Journal) -> None:
    clock = Clock()
    exchange = CountingExchange(sim(clock, "50000"))
    bot = service(exchange, journal, BAND, clock)
    for _ in range(3):
        await bot.run_cycle()

    assert exchange.reads == ["snapshot"] * 3


def test_needs_source_when_source_read_or_in_band_then_false() -> None:
    clock = Clock()
    venue = sim(clock, "45000")
    full = venue.snapshot()
    assert not needs_source(full, plan_rebalance(full, BAND, POLICY, clock.now))
    steady = sim(clock, "50000").snapshot(include_source=False)
    assert not needs_source(steady, plan_rebalance(steady, BAND, POLICY, clock.now))


def test_needs_source_when_below_band_then_false_and_the_plan_is_the_same() -> None:
    # Re-levering releases collateral to the source wallet or adds exposure: it never
    # draws on the source, so the plan on the unread source is the plan on the full one.
    # 60000: E = 1000 + 600 = 1600, N = 3600, L = 2.25 < 2.5.
    clock = Clock()
    venue = sim(clock, "60000")
    policy = Policy(release_excess=True)
    unread, full = venue.snapshot(include_source=False), venue.snapshot()
    on_unread = plan_rebalance(unread, BAND, policy, clock.now)
    on_full = plan_rebalance(full, BAND, policy, clock.now)

    assert {d.rule for d in on_unread.decisions} == {Rule.RELEVER}
    assert not needs_source(unread, on_unread)
    assert [a.kind for a in on_unread.actions] == [ActionKind.TRANSFER_OUT]
    assert on_unread.actions == on_full.actions
