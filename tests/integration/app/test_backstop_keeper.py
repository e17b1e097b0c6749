"""The backstop ladder kept by AccountService on a real journal and the simulated venue.

`StopVenue` is the Exchange port over a SimulatedExchange that can "kill the process"
(raise `ProcessDied`, a BaseException nothing in the service catches) right after a
stop placement reached the venue, or fail the stop listing: a restarted service on the
same database and the same venue must then find what the dead one left.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bot.app.service import AccountRuntime, AccountService
from bot.domain.actions import ActionKind
from bot.domain.gate import TradingState
from bot.domain.models import OrderSide, Side
from bot.domain.stops import BackstopSettings, StopOrder, StopStatus
from bot.domain.targets import Policy, Target, Targets
from bot.domain.vocabulary import AlertLevel
from bot.exchange.port import OrderRequest, OutcomeUnknown, StopRequest, TemporaryError
from bot.exchange.sim.exchange import SimulatedExchange
from bot.exchange.sim.markets import binance_usdm_markets
from bot.store.journal import Journal
from bot.store.records import ActionRecord, ActionStatus
from tests.support.postgres import BACKENDS, database_url

BTC = "BTC/USDT:USDT"
T0 = datetime(2021, 5, 19, 13, 0, tzinfo=UTC)
ACCOUNT = "main"
TEN_X = Targets(account=Target(Decimal(10), Decimal(8), Decimal(12)))


class ProcessDied(BaseException):
    """Stands for kill -9: no handler in the service runs."""


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class StopVenue(SimulatedExchange):
    """The simulated venue with scripted trouble on its stop calls."""

    def __init__(self, **account: object) -> None:
        super().__init__(**account)  # type: ignore[arg-type]
        self.die_after_place = False
        self.listing_fails = False
        self.listing_breaks = False
        # Lose the reply of the next placement: after the venue took it, or before.
        self.lose_place_reply: str | None = None
        self.lose_cancel_reply = False
        self.placed: list[str] = []

    async def place_stop(self, request: StopRequest) -> StopOrder:
        if self.lose_place_reply == "before":
            self.lose_place_reply = None
            raise OutcomeUnknown("timed out before the venue saw it")
        order = await super().place_stop(request)
        self.placed.append(request.client_order_id)
        if self.die_after_place:
            raise ProcessDied("killed after the venue took the stop, before the reply")
        if self.lose_place_reply == "after":
            self.lose_place_reply = None
            raise OutcomeUnknown("reply lost after the venue took it")
        return order

    async def cancel_stop(self, order: StopOrder) -> StopOrder:
        state = await super().cancel_stop(order)
        if self.lose_cancel_reply:
            self.lose_cancel_reply = False
            raise OutcomeUnknown("cancel reply lost")
        return state

    async def fetch_stops(self, symbols: Sequence[str]) -> tuple[StopOrder, ...]:
        if self.listing_fails:
            raise TemporaryError("stop listing timed out")
        if self.listing_breaks:
            raise KeyError("algoId")  # a parsing bug, not the venue's refusal
        return await super().fetch_stops(symbols)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def venue(clock: Clock) -> StopVenue:
    venue = StopVenue(
        markets=binance_usdm_markets(),
        clock=clock,
        derivatives=Decimal(10000),
        source=Decimal(5000),
        account=ACCOUNT,
    )
    venue.set_mark(BTC, Decimal(40000))
    # 2.5 BTC at 40k = 100k notional on 10k: 10x, inside the 8-12 band.
    venue.open_position(BTC, Side.LONG, Decimal("2.5"))
    return venue


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request, request.param, tmp_path / "journal.sqlite")


@pytest.fixture
async def journal(db_url: str, clock: Clock) -> AsyncIterator[Journal]:
    journal = await Journal.open(db_url, clock=clock)
    yield journal
    await journal.close()


def service_for(
    venue: StopVenue, journal: Journal, clock: Clock, settings: BackstopSettings | None = None
) -> AccountService:
    runtime = AccountRuntime(
        name=ACCOUNT,
        exchange=venue,
        targets=TEN_X,
        policy=Policy(cooldown=timedelta(0)),
        interval=timedelta(minutes=5),
        backstop=settings or BackstopSettings(),
    )
    return AccountService(runtime, journal, clock)


async def stop_rows(journal: Journal) -> list[ActionRecord]:
    rows = await journal.recent_actions(ACCOUNT, limit=200)
    return [r for r in reversed(rows) if r.kind.value.startswith("backstop_")]


async def test_cycle_when_backstop_on_then_ladder_rests_at_venue_and_journal(
    venue: StopVenue, journal: Journal, clock: Clock
) -> None:
    report = await service_for(venue, journal, clock).run_cycle()

    resting = await venue.fetch_stops([BTC])
    assert len(resting) == 3
    assert all(o.side.value == "sell" and o.trigger_price < Decimal(40000) for o in resting)
    journaled = await journal.resting_stops(ACCOUNT)
    assert {r.exchange_id for r in journaled} == {o.exchange_id for o in resting}
    assert [o.action.kind for o in report.backstops.outcomes] == [ActionKind.BACKSTOP_PLACE] * 3
    assert all(o.ok for o in report.backstops.outcomes)


async def test_cycle_when_only_the_mark_moved_then_ladder_left_alone(
    venue: StopVenue, journal: Journal, clock: Clock
) -> None:
    service = service_for(venue, journal, clock)
    await service.run_cycle()
    clock.advance(300)
    # Same position, same wallet: the danger point is the same price wherever the mark is.
    venue.set_mark(BTC, Decimal(40500))

    report = await service.run_cycle()

    assert report.backstops.outcomes == ()
    assert len(venue.placed) == 3


async def test_cycle_when_equity_moved_then_replacement_placed_before_old_cancelled(
    venue: StopVenue, journal: Journal, clock: Clock
) -> None:
    service = service_for(venue, journal, clock)
    await service.run_cycle()
    old = {o.exchange_id for o in await venue.fetch_stops([BTC])}
    clock.advance(300)
    # The owner adds 2,000 of collateral: leverage 8.3 (in band, no trade), and the
    # danger point moves ~2% further away.
    await venue.transfer("USDT", Decimal(2000), True, "owner-transfer")

    report = await service.run_cycle()

    kinds = [o.action.kind for o in report.backstops.outcomes]
    assert kinds == [ActionKind.BACKSTOP_PLACE] * 3 + [ActionKind.BACKSTOP_CANCEL] * 3
    now = await venue.fetch_stops([BTC])
    assert len(now) == 3 and not old & {o.exchange_id for o in now}
    assert len(await journal.resting_stops(ACCOUNT)) == 3


async def test_cycle_when_stop_triggered_while_away_then_fill_journaled_and_alerted(
    venue: StopVenue, journal: Journal, clock: Clock
) -> None:
    service = service_for(venue, journal, clock)
    await service.run_cycle()
    first = min(await venue.fetch_stops([BTC]), key=lambda o: -o.trigger_price)
    # The daemon is away; the crash reaches level 1 only.
    fired = venue.trigger_stops(BTC, Decimal(40000), first.trigger_price - 1)
    assert [f.exchange_id for f in fired] == [first.exchange_id]
    venue.set_mark(BTC, first.trigger_price)
    clock.advance(300)

    report = await service.run_cycle()

    assert [f.exchange_id for f in report.backstops.fills] == [first.exchange_id]
    fills = [r for r in await stop_rows(journal) if r.kind is ActionKind.BACKSTOP_FILL]
    assert len(fills) == 1
    assert fills[0].status is ActionStatus.OK
    assert fills[0].filled == fired[0].filled and fills[0].fill_price == fired[0].average_price
    alerts = await journal.due_alerts(clock.now + timedelta(days=1), limit=50)
    assert any(a.level is AlertLevel.ACTION and "BACKSTOP TRIGGERED" in a.text for a in alerts)
    # The ladder is rebuilt for what is left: never more than the position.
    left = venue.positions()[0].contracts
    resting = await venue.fetch_stops([BTC])
    assert resting and all(o.amount <= left for o in resting)
    assert sum(o.amount for o in resting) <= left


async def test_cycle_when_stop_cancelled_outside_then_owner_told_and_placed_again(
    venue: StopVenue, journal: Journal, clock: Clock
) -> None:
    service = service_for(venue, journal, clock)
    await service.run_cycle()
    victim = (await venue.fetch_stops([BTC]))[0]
    await venue.cancel_stop(victim)
    clock.advance(300)
    # Nothing in the snapshot shows a stop cancelled by hand: the listing is read again
    # only at the verify interval (a steady cycle costs no backstop request).
    await service.run_cycle()
    assert len(await venue.fetch_stops([BTC])) == 2
    clock.advance(300)

    await service.run_cycle()

    assert len(await venue.fetch_stops([BTC])) == 3
    alerts = await journal.due_alerts(clock.now + timedelta(days=1), limit=50)
    assert any("outside levbot" in a.text for a in alerts)
    assert len(await journal.resting_stops(ACCOUNT)) == 3


async def test_cycle_when_position_closed_then_orphaned_stops_cancelled(
    venue: StopVenue, journal: Journal, clock: Clock
) -> None:
    service = service_for(venue, journal, clock)
    await service.run_cycle()
    # The owner closes the position by hand.
    await venue.create_order(
        OrderRequest(
            symbol=BTC, side=OrderSide.SELL, amount=Decimal("2.5"), reduce_only=True,
            position_side=Side.LONG, client_order_id="owner-1",
        )
    )  # fmt: skip
    clock.advance(300)

    await service.run_cycle()

    assert await venue.fetch_stops([BTC]) == ()
    assert await journal.resting_stops(ACCOUNT) == ()


async def test_cycle_when_paused_then_no_stop_placed(
    venue: StopVenue, journal: Journal, clock: Clock
) -> None:
    await journal.set_paused(ACCOUNT, True, "owner")

    report = await service_for(venue, journal, clock).run_cycle()

    assert report.backstops.outcomes == ()
    assert len(report.backstops.held_back) == 3
    assert await venue.fetch_stops([BTC]) == ()
    assert (await service_for(venue, journal, clock).trading_state()) is TradingState.PAUSED


async def test_cycle_when_stop_listing_fails_then_cycle_still_delevers(
    venue: StopVenue, journal: Journal, clock: Clock
) -> None:
    venue.listing_fails = True
    venue.set_mark(BTC, Decimal(38500))  # ~14x: above the band

    report = await service_for(venue, journal, clock).run_cycle()

    assert report.outcomes and all(o.ok for o in report.outcomes)
    assert report.after is not None and report.after.leverage is not None
    assert report.after.leverage < Decimal(12)
    assert any("stop listing timed out" in n for n in report.backstops.notes)


async def test_restart_when_killed_after_stop_reached_venue_then_found_not_placed_twice(
    venue: StopVenue, journal: Journal, clock: Clock, db_url: str
) -> None:
    venue.die_after_place = True
    with pytest.raises(ProcessDied):
        await service_for(venue, journal, clock).run_cycle()
    assert len(venue.placed) == 1
    venue.die_after_place = False
    clock.advance(60)
    restarted = await Journal.open(db_url, clock=clock)
    try:
        await service_for(venue, restarted, clock).run_cycle()
        rows = await stop_rows(restarted)
    finally:
        await restarted.close()

    first = [r for r in rows if r.client_id == venue.placed[0]]
    assert first and first[0].status is ActionStatus.OK  # found at the venue by client id
    resting = await venue.fetch_stops([BTC])
    assert len(resting) == 3  # the found one kept, two more placed: no duplicate level
    assert len({o.trigger_price for o in resting}) == 3


async def test_preview_when_asked_then_shows_ladder_without_sending(
    venue: StopVenue, journal: Journal, clock: Clock
) -> None:
    preview = await service_for(venue, journal, clock).backstop_preview()

    assert [s.level for s in preview.desired] == [1, 2, 3]
    assert len(preview.changes.place) == 3
    assert await venue.fetch_stops([BTC]) == ()
    assert await stop_rows(journal) == []


async def test_cycle_when_backstop_off_then_no_stop_request(
    venue: StopVenue, journal: Journal, clock: Clock
) -> None:
    venue.listing_fails = True  # would show in the notes if the keeper asked

    report = await service_for(venue, journal, clock, BackstopSettings(enabled=False)).run_cycle()

    assert report.backstops.outcomes == () and report.backstops.notes == ()
    assert venue.placed == []


def test_stop_order_when_resting_then_status_open() -> None:
    order = StopOrder(
        client_order_id="lb1", exchange_id="1", symbol=BTC, side=Side.LONG.closing_order_side,
        amount=Decimal(1), trigger_price=Decimal(1), status=StopStatus.OPEN,
    )  # fmt: skip
    assert order.resting


async def test_cycle_when_placement_reply_lost_after_venue_took_it_then_found_same_cycle(
    venue: StopVenue, journal: Journal, clock: Clock
) -> None:
    venue.lose_place_reply = "after"

    await service_for(venue, journal, clock).run_cycle()

    rows = await stop_rows(journal)
    assert [r.status for r in rows] == [ActionStatus.OK] * 3
    assert len(await venue.fetch_stops([BTC])) == 3
    assert len(await journal.resting_stops(ACCOUNT)) == 3


async def test_cycle_when_placement_never_reached_venue_then_failed_next_cycle_and_replaced(
    venue: StopVenue, journal: Journal, clock: Clock
) -> None:
    service = service_for(venue, journal, clock)
    venue.lose_place_reply = "before"
    await service.run_cycle()
    lost = (await stop_rows(journal))[0]
    assert lost.status is ActionStatus.UNKNOWN  # may still be on its way: not failed yet
    assert len(await venue.fetch_stops([BTC])) == 2
    clock.advance(300)

    await service.run_cycle()

    rows = {r.client_id: r for r in await stop_rows(journal)}
    assert rows[lost.client_id].status is ActionStatus.FAILED
    assert len(await venue.fetch_stops([BTC])) == 3


async def test_cycle_when_cancel_reply_lost_then_cancel_settled_by_lookup(
    venue: StopVenue, journal: Journal, clock: Clock
) -> None:
    service = service_for(venue, journal, clock)
    await service.run_cycle()
    await venue.transfer("USDT", Decimal(2000), True, "owner-transfer")
    clock.advance(300)
    venue.lose_cancel_reply = True

    await service.run_cycle()

    cancels = [r for r in await stop_rows(journal) if r.kind is ActionKind.BACKSTOP_CANCEL]
    assert len(cancels) == 3 and all(r.status is ActionStatus.OK for r in cancels)
    assert len(await venue.fetch_stops([BTC])) == 3
    assert len(await journal.resting_stops(ACCOUNT)) == 3


async def test_cycle_when_backstop_step_has_a_bug_then_cycle_still_delevers_and_says_so(
    venue: StopVenue, journal: Journal, clock: Clock
) -> None:
    venue.listing_breaks = True
    venue.set_mark(BTC, Decimal(38500))  # ~14x: above the band

    report = await service_for(venue, journal, clock).run_cycle()

    assert report.outcomes and all(o.ok for o in report.outcomes)
    assert report.backstops.error == "KeyError: 'algoId'"


def test_reason_when_backstop_then_described_without_leverage() -> None:
    from bot.domain.actions import Reason, Rule

    reason = Reason(Rule.BACKSTOP, "main", None, None, "level 2")

    assert reason.describe() == "backstop main: level 2"


class CountingVenue(StopVenue):
    def __init__(self, **account: object) -> None:
        super().__init__(**account)
        self.listings = 0

    async def fetch_stops(self, symbols: Sequence[str]) -> tuple[StopOrder, ...]:
        self.listings += 1
        return await super().fetch_stops(symbols)


async def test_cycle_when_steady_then_no_stop_request_until_a_leg_moves(
    journal: Journal, clock: Clock
) -> None:
    venue = CountingVenue(
        markets=binance_usdm_markets(), clock=clock, derivatives=Decimal(10000),
        source=Decimal(5000), account=ACCOUNT,
    )  # fmt: skip
    venue.set_mark(BTC, Decimal(40000))
    venue.open_position(BTC, Side.LONG, Decimal("2.5"))
    service = service_for(venue, journal, clock)
    await service.run_cycle()
    assert venue.listings == 1
    for _ in range(3):
        clock.advance(60)
        await service.run_cycle()
    assert venue.listings == 1  # steady: the snapshot alone shows nothing triggered

    first = max(await venue.fetch_stops([BTC]), key=lambda o: o.trigger_price)
    venue.trigger_stops(BTC, Decimal(40000), first.trigger_price - 1)
    venue.set_mark(BTC, first.trigger_price)
    listed = venue.listings
    clock.advance(60)
    report = await service.run_cycle()

    assert venue.listings > listed  # the leg shrank: the venue is asked at once
    assert [f.exchange_id for f in report.backstops.fills] == [first.exchange_id]
