"""AccountService cycles on a real journal (SQLite in tmp_path) and the simulated exchange.

The exchange is a `ScriptedExchange`: it implements the Exchange port over a
SimulatedExchange and can refuse calls, or "kill the process" (raise `ProcessDied`, a
BaseException nothing in the service catches) before or after a write reaches the
venue. A crash test then starts a new journal and a new service on the same database
and the same simulated account, as a restarted daemon would find them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bot.app.service import AccountRuntime, AccountService, CycleReport
from bot.domain.actions import ActionKind, Rule
from bot.domain.gate import TradingState
from bot.domain.models import AccountSnapshot, Side
from bot.domain.targets import Policy, Target, Targets
from bot.domain.vocabulary import ALL_ACCOUNTS
from bot.exchange.port import (
    AuthenticationError,
    CapabilityMissing,
    MarginResult,
    OrderRequest,
    OrderResult,
    OrderStatus,
    TemporaryError,
    TransferResult,
)
from bot.exchange.sim.exchange import SimulatedExchange
from bot.exchange.sim.markets import binance_usdm_markets
from bot.store.journal import Journal
from bot.store.records import (
    ActionRecord,
    ActionStatus,
    AlertRecord,
    CycleStatus,
    PendingIntent,
)
from tests.support.postgres import BACKENDS, database_url

BTC = "BTC/USDT:USDT"
T0 = datetime(2021, 5, 19, 13, 0, tzinfo=UTC)
ACCOUNT = "main"
BAND = Targets(account=Target(Decimal(3), Decimal("2.5"), Decimal("3.5")))


class FakeClock:
    """One settable clock for the exchange, the journal and the service."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class ProcessDied(BaseException):
    """Stands for kill -9: no handler in the service runs, nothing after it is written."""


class ScriptedExchange:
    """The Exchange port over a SimulatedExchange, with failures scripted per call.

    `calls` lists every call in order. For each write it also notes what the journal
    said about its client id at the moment the call arrived (the intent must be there).
    """

    def __init__(self, venue: SimulatedExchange, journal: Journal | None = None) -> None:
        self.venue = venue
        self.name = venue.name
        self.journal = journal
        self.snapshot_errors: list[BaseException] = []
        self.refuse: dict[str, BaseException] = {}  # raised instead of the call
        self.die_before: set[str] = set()  # the process dies before the call is sent
        self.die_after: set[str] = set()  # the venue acts, then the process dies
        self.calls: list[str] = []
        self.journal_at_call: dict[str, ActionStatus | None] = {}
        self.orders_reported_as: OrderStatus | None = None  # e.g. the venue canceled the order
        # The venue answers a new order with this state and fills nothing (e.g. canceled).
        self.orders_answered_as: OrderStatus | None = None
        self.without_marks = False  # the venue reports positions but no mark price
        # The venue acts, then the reply is lost: this is raised instead of the result.
        self.lose_reply: dict[str, BaseException] = {}
        # The venue cannot look transfers up (as Hyperliquid): fetch_transfer refuses.
        self.transfers_untraceable = False

    @property
    def writes(self) -> list[str]:
        return [c for c in self.calls if c in ("transfer", "adjust_margin", "create_order")]

    async def fetch_snapshot(self, include_source: bool = True) -> AccountSnapshot:
        self.calls.append("fetch_snapshot")
        if self.snapshot_errors:
            raise self.snapshot_errors.pop(0)
        snapshot = await self.venue.fetch_snapshot(include_source)
        if self.without_marks:
            unpriced = tuple(replace(p, mark_price=None) for p in snapshot.positions)
            snapshot = replace(snapshot, positions=unpriced)
        return snapshot

    async def fetch_source(self, snapshot: AccountSnapshot) -> AccountSnapshot:
        self.calls.append("fetch_source")
        return await self.venue.fetch_source(snapshot)

    async def transfer(
        self, currency: str, amount: Decimal, into_derivatives: bool, client_id: str
    ) -> TransferResult:
        await self._arrive("transfer", client_id)
        result = await self.venue.transfer(currency, amount, into_derivatives, client_id)
        self._leave("transfer")
        return result

    async def adjust_margin(
        self, symbol: str, side: Side, amount: Decimal, add: bool, hedged: bool = False
    ) -> MarginResult:
        await self._arrive("adjust_margin", None)
        result = await self.venue.adjust_margin(symbol, side, amount, add, hedged)
        self._leave("adjust_margin")
        return result

    async def create_order(self, request: OrderRequest) -> OrderResult:
        await self._arrive("create_order", request.client_order_id)
        if self.orders_answered_as is not None:
            self._leave("create_order")
            return OrderResult(
                client_order_id=request.client_order_id, exchange_id="X-1",
                symbol=request.symbol, side=request.side, amount=request.amount,
                filled=Decimal(0), average_price=None, fee=Decimal(0),
                status=self.orders_answered_as,
            )  # fmt: skip
        result = await self.venue.create_order(request)
        self._leave("create_order")
        return result

    async def fetch_order_by_client_id(
        self, symbol: str, client_order_id: str
    ) -> OrderResult | None:
        self.calls.append("fetch_order_by_client_id")
        order = await self.venue.fetch_order_by_client_id(symbol, client_order_id)
        if order is None or self.orders_reported_as is None:
            return order
        return replace(order, status=self.orders_reported_as, filled=Decimal(0))

    async def fetch_transfer(
        self,
        client_id: str,
        currency: str,
        amount: Decimal,
        into_derivatives: bool,
        since: datetime,
    ) -> TransferResult | None:
        self.calls.append("fetch_transfer")
        if self.transfers_untraceable:
            raise CapabilityMissing("this venue cannot look transfers up")
        return await self.venue.fetch_transfer(client_id, currency, amount, into_derivatives, since)

    async def close(self) -> None:
        await self.venue.close()

    async def _arrive(self, call: str, client_id: str | None) -> None:
        if call in self.die_before:
            raise ProcessDied(f"killed before {call}")
        if call in self.refuse:
            raise self.refuse[call]
        self.calls.append(call)
        if self.journal is not None and client_id is not None:
            journaled = await _action(self.journal, client_id)
            self.journal_at_call[client_id] = None if journaled is None else journaled.status

    def _leave(self, call: str) -> None:
        if call in self.die_after:
            raise ProcessDied(f"killed after {call}")
        if call in self.lose_reply:
            raise self.lose_reply[call]


def venue(
    clock: FakeClock,
    *,
    wallet: str = "1000",
    source: str = "300",
    contracts: str = "0.1",
    entry: str = "50000",
    mark: str | None = None,
) -> SimulatedExchange:
    """A cross account with one BTC long opened at `entry`, marked at `mark`."""
    sim = SimulatedExchange(
        markets=binance_usdm_markets(),
        clock=clock,
        derivatives=Decimal(wallet),
        source=Decimal(source),
        account=ACCOUNT,
    )
    sim.set_mark(BTC, Decimal(entry))
    sim.open_position(BTC, Side.LONG, Decimal(contracts))
    if mark is not None:
        sim.set_mark(BTC, Decimal(mark))
    return sim


def service(
    exchange: ScriptedExchange,
    journal: Journal,
    clock: FakeClock,
    *,
    targets: Targets = BAND,
    dry_run: bool = False,
    unreachable_after: int = 3,
) -> AccountService:
    runtime = AccountRuntime(
        name=ACCOUNT,
        exchange=exchange,
        targets=targets,
        policy=Policy(cooldown=timedelta(minutes=5)),
        interval=timedelta(seconds=30),
        dry_run=dry_run,
        unreachable_after=unreachable_after,
    )
    return AccountService(runtime, journal, clock)


async def _action(journal: Journal, client_id: str) -> ActionRecord | None:
    return next(
        (a for a in await journal.recent_actions(ACCOUNT, 1000) if a.client_id == client_id), None
    )


async def alerts(journal: Journal, clock: FakeClock) -> list[AlertRecord]:
    return await journal.due_alerts(clock.now + timedelta(days=1), limit=1000)


def leverage(sim: SimulatedExchange) -> Decimal:
    notional = sum((p.contracts * sim.mark(p.symbol) for p in sim.positions()), Decimal(0))
    return notional / sim.cross_equity()


def contracts(sim: SimulatedExchange) -> Decimal:
    return sum((p.contracts for p in sim.positions()), Decimal(0))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request, request.param, tmp_path / "levbot.sqlite")


@pytest.fixture
async def journal(db_url: str, clock: FakeClock) -> AsyncIterator[Journal]:
    opened = await Journal.open(db_url, clock=clock)
    try:
        yield opened
    finally:
        await opened.close()


# -- one ordinary cycle -------------------------------------------------------------------


async def test_run_cycle_when_above_band_then_intents_results_snapshots_and_alert_journaled(
    journal: Journal, clock: FakeClock
) -> None:
    sim = venue(clock)  # 5000 notional on 1000 equity: 5x, above 2.5-3.5
    exchange = ScriptedExchange(sim, journal)

    report = await service(exchange, journal, clock).run_cycle()

    assert report.status == "ok"
    assert [o.action.kind for o in report.outcomes] == [
        ActionKind.TRANSFER_IN,
        ActionKind.REDUCE_ORDER,
    ]
    assert exchange.writes == ["transfer", "create_order"]
    # Each intent was committed before its exchange call, and resolved after it.
    client_ids = [o.client_id for o in report.outcomes]
    assert exchange.journal_at_call == dict.fromkeys(client_ids, ActionStatus.PENDING)
    (cycle,) = await journal.history(ACCOUNT)
    assert cycle.status is CycleStatus.OK
    assert [(a.client_id, a.kind, a.status, a.dry_run) for a in cycle.actions] == [
        (client_ids[0], ActionKind.TRANSFER_IN, ActionStatus.OK, False),
        (client_ids[1], ActionKind.REDUCE_ORDER, ActionStatus.OK, False),
    ]
    order_id = sim.state().orders[client_ids[1]].exchange_id
    assert [a.exchange_id for a in cycle.actions] == ["T1", order_id]
    assert all(a.rule == Rule.DELEVER.value for a in cycle.actions)
    assert await journal.pending_intents(ACCOUNT) == []
    # A snapshot before the actions and one after, both of this cycle.
    snapshots = await journal.snapshots_since(ACCOUNT, T0 - timedelta(hours=1))
    assert [s.cycle_id for s in snapshots] == [cycle.id, cycle.id]
    assert snapshots[0].leverage == Decimal(5)
    assert snapshots[1].leverage is not None
    assert abs(snapshots[1].leverage - 3) < Decimal("0.05")
    assert abs(leverage(sim) - 3) < Decimal("0.05")
    actions_alerted = [a for a in await alerts(journal, clock) if a.level == "action"]
    assert len(actions_alerted) == 1
    assert f"account leverage 5.00 -> {snapshots[1].leverage:.2f}" in actions_alerted[0].text


async def test_run_cycle_when_in_band_then_nothing_is_sent_or_alerted(
    journal: Journal, clock: FakeClock
) -> None:
    exchange = ScriptedExchange(venue(clock, contracts="0.06"))  # 3000 on 1000: 3x

    report = await service(exchange, journal, clock).run_cycle()

    assert report.status == "ok"
    assert report.plan is not None and report.plan.empty
    assert report.outcomes == ()
    assert exchange.writes == []
    (cycle,) = await journal.history(ACCOUNT)
    assert (cycle.status, cycle.actions) == (CycleStatus.OK, ())
    assert len(await journal.snapshots_since(ACCOUNT, T0 - timedelta(hours=1))) == 1
    assert await alerts(journal, clock) == []


async def test_run_cycle_when_mark_price_missing_then_no_action_and_leverage_unknown(
    journal: Journal, clock: FakeClock
) -> None:
    exchange = ScriptedExchange(venue(clock))  # 5x, far above the band
    exchange.without_marks = True

    report = await service(exchange, journal, clock).run_cycle()

    assert report.status == "ok"
    assert report.plan is not None and report.plan.empty
    assert f"no action: missing mark price for {BTC}" in report.notes
    assert exchange.writes == []
    assert report.before is not None
    assert (report.before.leverage, report.before.margin_ratio) == (None, None)
    assert report.before.equity == Decimal(1000)  # the wallet; no PnL without a mark
    (snapshot,) = await journal.snapshots_since(ACCOUNT, T0 - timedelta(hours=1))
    assert snapshot.leverage is None


async def test_run_cycle_when_paused_then_nothing_sent_and_notes_say_held_back(
    journal: Journal, clock: FakeClock
) -> None:
    exchange = ScriptedExchange(venue(clock))
    await journal.set_paused(ACCOUNT, True, by="owner")
    account = service(exchange, journal, clock)

    report = await account.run_cycle()

    assert await account.trading_state() is TradingState.PAUSED
    assert report.status == "paused"
    assert report.plan is not None and not report.plan.empty
    assert exchange.writes == []
    assert any(n.startswith("held back: transfer_in: account paused") for n in report.notes)
    (cycle,) = await journal.history(ACCOUNT)
    assert cycle.status is CycleStatus.PAUSED
    assert cycle.actions == ()
    assert any("held back" in note for note in cycle.notes)
    # A paused cycle ran to the end: health counts it.
    assert await journal.last_successful_cycle(ACCOUNT) == T0


async def test_run_cycle_when_all_accounts_paused_then_nothing_sent(
    journal: Journal, clock: FakeClock
) -> None:
    exchange = ScriptedExchange(venue(clock))
    await journal.set_paused(ALL_ACCOUNTS, True, by="owner")

    report = await service(exchange, journal, clock).run_cycle()

    assert report.status == "paused"
    assert exchange.writes == []


async def test_run_cycle_when_dry_run_then_nothing_sent_and_actions_journaled_as_dry_run(
    journal: Journal, clock: FakeClock
) -> None:
    sim = venue(clock)
    exchange = ScriptedExchange(sim)

    report = await service(exchange, journal, clock, dry_run=True).run_cycle()

    assert report.status == "dry_run"
    assert exchange.writes == []
    assert (sim.wallet, sim.source, contracts(sim)) == (Decimal(1000), Decimal(300), Decimal("0.1"))
    (cycle,) = await journal.history(ACCOUNT)
    assert cycle.status is CycleStatus.DRY_RUN
    assert [a.kind for a in cycle.actions] == [ActionKind.TRANSFER_IN, ActionKind.REDUCE_ORDER]
    assert all(a.dry_run for a in cycle.actions)
    assert all(
        a.status is not ActionStatus.PENDING and a.exchange_id is None for a in cycle.actions
    )
    assert await journal.pending_intents(ACCOUNT) == []
    # Dry-run actions never count towards caps or cooldowns.
    activity = await journal.recent_activity(ACCOUNT, clock.now)
    assert (activity.transferred_today, activity.last_order_at) == (0, {})
    (alert,) = await alerts(journal, clock)
    assert alert.level == "info"
    assert "dry run" in alert.text and "would transfer in" in alert.text


async def test_run_cycle_when_target_overridden_in_journal_then_override_is_used(
    journal: Journal, clock: FakeClock
) -> None:
    sim = venue(clock)  # 5x: inside the configured 4-6 band
    exchange = ScriptedExchange(sim)
    wide = Targets(account=Target(Decimal(5), Decimal(4), Decimal(6)))
    account = service(exchange, journal, clock, targets=wide)

    untouched = await account.run_cycle()
    await journal.set_target_override(
        ACCOUNT, None, Target(Decimal(3), Decimal("2.5"), Decimal("3.5")), by="owner"
    )
    clock.advance(30)
    overridden = await account.run_cycle()

    assert untouched.plan is not None and untouched.plan.empty
    assert (await account.current_targets()).account.leverage == 3
    assert overridden.plan is not None
    assert [d.target for d in overridden.plan.decisions] == [Decimal(3)]
    assert overridden.status == "ok" and len(overridden.outcomes) == 2
    assert abs(leverage(sim) - 3) < Decimal("0.05")


# -- the exchange in trouble ---------------------------------------------------------


async def test_run_cycle_when_authentication_fails_then_halted_alerted_once_and_never_acts(
    journal: Journal, clock: FakeClock
) -> None:
    exchange = ScriptedExchange(venue(clock))
    exchange.snapshot_errors = [
        AuthenticationError("binance: invalid API key"),
        AuthenticationError("again"),
    ]
    account = service(exchange, journal, clock)

    first = await account.run_cycle()
    clock.advance(30)
    second = await account.run_cycle()
    clock.advance(30)
    later = await account.run_cycle()  # the exchange answers again: still no writes

    assert (first.status, second.status, later.status) == ("halted", "halted", "halted")
    assert account.state is TradingState.HALTED
    assert await account.trading_state() is TradingState.HALTED
    assert later.plan is not None and not later.plan.empty
    assert any("held back: transfer_in: account halted" in n for n in later.notes)
    assert exchange.writes == []
    critical = [a for a in await alerts(journal, clock) if a.level == "critical"]
    assert len(critical) == 1
    assert "HALTED" in critical[0].text and "invalid API key" in critical[0].text
    statuses = [c.status for c in await journal.history(ACCOUNT)]
    assert statuses == [CycleStatus.HALTED] * 3
    assert await journal.last_successful_cycle(ACCOUNT) is None


async def test_run_cycle_when_write_refused_for_authentication_then_intent_failed_not_pending(
    journal: Journal, clock: FakeClock
) -> None:
    sim = venue(clock)
    exchange = ScriptedExchange(sim)
    exchange.refuse["transfer"] = AuthenticationError("key lacks transfer permission")
    account = service(exchange, journal, clock)

    report = await account.run_cycle()

    assert report.status == "halted"
    assert account.state is TradingState.HALTED
    assert sim.source == 300
    assert await journal.pending_intents(ACCOUNT) == []
    (cycle,) = await journal.history(ACCOUNT)
    (transfer,) = cycle.actions
    assert transfer.kind is ActionKind.TRANSFER_IN
    assert transfer.status is ActionStatus.FAILED
    assert transfer.error is not None and "permission" in transfer.error


async def test_run_cycle_when_exchange_unreachable_then_one_warning_then_reachable_again(
    journal: Journal, clock: FakeClock
) -> None:
    exchange = ScriptedExchange(venue(clock, contracts="0.06"))
    exchange.snapshot_errors = [TemporaryError("binance: 503 Service Unavailable")] * 4
    account = service(exchange, journal, clock, unreachable_after=3)

    reports: list[CycleReport] = []
    warnings_after: list[int] = []
    for _ in range(5):
        reports.append(await account.run_cycle())
        warnings_after.append(
            len([a for a in await alerts(journal, clock) if a.level == "warning"])
        )
        clock.advance(30)

    assert [r.status for r in reports] == ["failed"] * 4 + ["ok"]
    assert warnings_after == [0, 0, 1, 1, 1]
    texts = [a.text for a in await alerts(journal, clock)]
    assert texts == [
        "[main] exchange unreachable for 3 cycles: binance: 503 Service Unavailable",
        "[main] exchange reachable again",
    ]
    assert account.failures_in_row == 0
    cycles = await journal.history(ACCOUNT)
    assert [c.status for c in reversed(cycles)] == [CycleStatus.FAILED] * 4 + [CycleStatus.OK]
    assert cycles[-1].error == "binance: 503 Service Unavailable"


async def test_run_cycle_when_margin_ratio_at_emergency_then_critical_alert_and_reduced(
    journal: Journal, clock: FakeClock
) -> None:
    # 0.1 BTC long from 50,000 marked at 40,200 on a 1,000 wallet: equity 20, maintenance
    # 16.08 (0.4% of 4,020), margin ratio 0.804 >= 0.8.
    sim = venue(clock, source="0", mark="40200")
    exchange = ScriptedExchange(sim)

    report = await service(exchange, journal, clock).run_cycle()

    assert report.plan is not None and report.plan.emergency
    assert report.before is not None and report.before.margin_ratio is not None
    assert report.before.margin_ratio >= Decimal("0.8")
    assert report.status == "ok"
    assert exchange.writes == ["create_order"]
    assert report.after is not None and report.after.margin_ratio is not None
    assert report.after.margin_ratio < Decimal("0.1")
    (critical,) = [a for a in await alerts(journal, clock) if a.level == "critical"]
    assert critical.text.startswith("[main] EMERGENCY (active).")
    assert "emergency main: leverage 201.00 ->" in critical.text


async def test_run_cycle_when_emergency_while_paused_then_critical_alert_says_not_acting(
    journal: Journal, clock: FakeClock
) -> None:
    exchange = ScriptedExchange(venue(clock, source="0", mark="40200"))
    await journal.set_paused(ACCOUNT, True, by="owner")

    report = await service(exchange, journal, clock).run_cycle()

    assert report.status == "paused"
    assert exchange.writes == []
    (critical,) = [a for a in await alerts(journal, clock) if a.level == "critical"]
    assert "EMERGENCY (paused). NOT ACTING: account paused by the owner." in critical.text


async def test_run_cycle_when_emergency_persists_then_alert_repeats_only_every_15_minutes(
    journal: Journal, clock: FakeClock
) -> None:
    exchange = ScriptedExchange(venue(clock, source="0", mark="40200"))
    await journal.set_paused(ACCOUNT, True, by="owner")
    account = service(exchange, journal, clock)

    for _ in range(3):  # three cycles a minute apart: one alert
        await account.run_cycle()
        clock.now += timedelta(minutes=1)
    clock.now += timedelta(minutes=13)
    await account.run_cycle()  # 16 minutes after the first alert: a reminder

    critical = [a for a in await alerts(journal, clock) if a.level == "critical"]
    assert len(critical) == 2


# -- crash windows: a new process on the same database and the same venue -------------


async def _crash(
    db_url: str,
    clock: FakeClock,
    sim: SimulatedExchange,
    *,
    die_before: str | None = None,
    die_after: str | None = None,
) -> PendingIntent:
    """A process that dies (kill -9) at the named call; the one intent it left pending."""
    async with await Journal.open(db_url, clock=clock) as journal:
        exchange = ScriptedExchange(sim)
        exchange.die_before = set() if die_before is None else {die_before}
        exchange.die_after = set() if die_after is None else {die_after}
        with pytest.raises(ProcessDied):
            await service(exchange, journal, clock).run_cycle()
        (pending,) = await journal.pending_intents(ACCOUNT)
    return pending


async def _restart(
    db_url: str,
    clock: FakeClock,
    sim: SimulatedExchange,
    orders_reported_as: OrderStatus | None = None,
    transfers_untraceable: bool = False,
) -> CycleReport:
    """A new process: a new journal and a new service, one cycle, then stop."""
    async with await Journal.open(db_url, clock=clock) as journal:
        exchange = ScriptedExchange(sim)
        exchange.orders_reported_as = orders_reported_as
        exchange.transfers_untraceable = transfers_untraceable
        return await service(exchange, journal, clock).run_cycle()


async def test_reconcile_when_order_accepted_but_result_lost_then_resolved_ok_and_not_repeated(
    db_url: str, clock: FakeClock
) -> None:
    sim = venue(clock)
    pending = await _crash(db_url, clock, sim, die_after="create_order")
    assert pending.kind is ActionKind.REDUCE_ORDER
    orders_before = dict(sim.state().orders)
    assert list(orders_before) == [pending.client_id]
    reduced_to = contracts(sim)

    clock.advance(30)
    report = await _restart(db_url, clock, sim)

    assert report.status == "ok"
    assert report.plan is not None and report.plan.empty  # the cut is visible: in band
    assert sim.state().orders == orders_before
    assert contracts(sim) == reduced_to
    async with await Journal.open(db_url, clock=clock) as journal:
        order = await _action(journal, pending.client_id)
        assert order is not None
        assert order.status is ActionStatus.OK
        assert order.exchange_id == orders_before[pending.client_id].exchange_id
        assert order.fill_price == orders_before[pending.client_id].average_price
        assert await journal.pending_intents(ACCOUNT) == []
        crashed, restarted = reversed(await journal.history(ACCOUNT))
        assert crashed.status is CycleStatus.FAILED
        assert crashed.error is not None and "interrupted" in crashed.error
        assert restarted.status is CycleStatus.OK
        (warning,) = [a for a in await alerts(journal, clock) if a.level == "warning"]
        assert "recovered after a restart" in warning.text
        assert f"{pending.client_id}: order found (closed)" in warning.text


async def test_reconcile_when_died_before_order_sent_then_marked_failed_and_done_once(
    db_url: str, clock: FakeClock
) -> None:
    sim = venue(clock)
    pending = await _crash(db_url, clock, sim, die_before="create_order")
    assert sim.state().orders == {}
    assert sim.source == 0  # the transfer went through before the crash

    clock.advance(30)
    report = await _restart(db_url, clock, sim)
    clock.advance(30)
    settled = await _restart(db_url, clock, sim)

    assert [o.action.kind for o in report.outcomes] == [ActionKind.REDUCE_ORDER]
    assert settled.outcomes == ()
    (order,) = sim.state().orders.values()
    assert order.client_order_id == report.outcomes[0].client_id != pending.client_id
    assert contracts(sim) == Decimal("0.1") - order.amount
    assert abs(leverage(sim) - 3) < Decimal("0.05")
    async with await Journal.open(db_url, clock=clock) as journal:
        lost = await _action(journal, pending.client_id)
        assert lost is not None
        assert (lost.status, lost.error) == (ActionStatus.FAILED, "never reached the exchange")
        kinds = [(a.kind, a.status) for a in reversed(await journal.recent_actions(ACCOUNT))]
        assert kinds == [
            (ActionKind.TRANSFER_IN, ActionStatus.OK),
            (ActionKind.REDUCE_ORDER, ActionStatus.FAILED),
            (ActionKind.REDUCE_ORDER, ActionStatus.OK),
        ]


async def test_reconcile_when_transfer_interrupted_then_unknown_alerted_and_not_repeated(
    db_url: str, clock: FakeClock
) -> None:
    # 4,000 notional on 1,000: 4x. Moving 333.34 in is all it takes to reach 3x.
    sim = venue(clock, source="1000", contracts="0.08")
    pending = await _crash(db_url, clock, sim, die_after="transfer")
    assert pending.kind is ActionKind.TRANSFER_IN
    assert sim.source == 1000 - pending.amount

    clock.advance(30)
    report = await _restart(db_url, clock, sim, transfers_untraceable=True)

    assert report.status == "ok"
    assert report.plan is not None and report.plan.empty
    assert sim.source == 1000 - pending.amount  # moved once
    assert sim.state().orders == {}
    async with await Journal.open(db_url, clock=clock) as journal:
        interrupted = await _action(journal, pending.client_id)
        assert interrupted is not None
        assert interrupted.status is ActionStatus.UNKNOWN
        assert await journal.pending_intents(ACCOUNT) == []
        (warning,) = [a for a in await alerts(journal, clock) if a.level == "warning"]
        assert f"{pending.client_id}: transfer_in interrupted, outcome unknown" in warning.text


async def test_reconcile_when_nothing_pending_then_no_recovery_alert(
    db_url: str, clock: FakeClock
) -> None:
    sim = venue(clock)
    await _restart(db_url, clock, sim)
    clock.advance(30)

    report = await _restart(db_url, clock, sim)

    assert report.status == "ok"
    async with await Journal.open(db_url, clock=clock) as journal:
        assert [a for a in await alerts(journal, clock) if a.level == "warning"] == []


async def test_reconcile_when_pending_order_was_rejected_then_marked_failed(
    db_url: str, clock: FakeClock
) -> None:
    sim = venue(clock)
    pending = await _crash(db_url, clock, sim, die_after="create_order")

    clock.advance(30)
    await _restart(db_url, clock, sim, orders_reported_as=OrderStatus.REJECTED)

    async with await Journal.open(db_url, clock=clock) as journal:
        order = await _action(journal, pending.client_id)
        assert order is not None
        assert (order.status, order.error) == (
            ActionStatus.FAILED,
            "order rejected with nothing filled",
        )


async def test_run_cycle_when_adapter_raises_unexpectedly_then_cycle_failed_and_next_reconciles(
    journal: Journal, clock: FakeClock
) -> None:
    sim = venue(clock)
    exchange = ScriptedExchange(sim)
    exchange.refuse["create_order"] = KeyError("filled")  # an adapter bug, not ExchangeError
    account = service(exchange, journal, clock)

    broken = await account.run_cycle()
    (lost,) = await journal.pending_intents(ACCOUNT)
    del exchange.refuse["create_order"]
    clock.advance(30)
    recovered = await account.run_cycle()

    assert broken.status == "failed"
    assert broken.error == "KeyError: 'filled'"
    assert [o.action.kind for o in recovered.outcomes] == [ActionKind.REDUCE_ORDER]
    assert len(sim.state().orders) == 1
    lost_now = await _action(journal, lost.client_id)
    assert lost_now is not None
    assert (lost_now.status, lost_now.error) == (ActionStatus.FAILED, "never reached the exchange")
    statuses = [c.status for c in reversed(await journal.history(ACCOUNT))]
    assert statuses == [CycleStatus.FAILED, CycleStatus.OK]


@pytest.mark.parametrize(
    "answer", [OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED]
)
async def test_run_cycle_when_venue_answers_dead_order_with_nothing_filled_then_failed_everywhere(
    journal: Journal, clock: FakeClock, answer: OrderStatus
) -> None:
    # No source funds: the plan is a reduce-only order, which the venue kills unfilled.
    sim = venue(clock, source="0", mark="40000")
    exchange = ScriptedExchange(sim)
    exchange.orders_answered_as = answer
    account = service(exchange, journal, clock)

    report = await account.run_cycle()

    assert exchange.writes == ["create_order"]
    assert report.status is CycleStatus.FAILED
    [outcome] = report.outcomes
    assert not outcome.ok
    assert outcome.error == f"order {answer.value} with nothing filled"
    [record] = await journal.recent_actions(ACCOUNT, 10)
    assert (record.status, record.error) == (ActionStatus.FAILED, outcome.error)
    [cycle] = await journal.history(ACCOUNT, limit=1)
    assert cycle.status is CycleStatus.FAILED
    # The journaled cycle says why (found empty by the chaos run).
    assert cycle.error == f"reduce_order failed: {outcome.error}"
    texts = [a.text for a in await alerts(journal, clock)]
    assert not any("rebalanced" in text for text in texts)
    assert any(f"FAILED: order {answer.value} with nothing filled" in text for text in texts)


async def test_reconcile_when_transfer_interrupted_and_venue_has_it_then_resolved_ok(
    db_url: str, clock: FakeClock
) -> None:
    sim = venue(clock, source="1000", contracts="0.08")
    pending = await _crash(db_url, clock, sim, die_after="transfer")

    clock.advance(30)
    report = await _restart(db_url, clock, sim)

    assert report.status == "ok"
    assert report.plan is not None and report.plan.empty
    assert sim.source == 1000 - pending.amount  # moved once
    async with await Journal.open(db_url, clock=clock) as journal:
        found = await _action(journal, pending.client_id)
        assert found is not None
        assert (found.status, found.exchange_id) == (ActionStatus.OK, "T1")
        (warning,) = [a for a in await alerts(journal, clock) if a.level == "warning"]
        assert f"{pending.client_id}: transfer found" in warning.text


async def test_reconcile_when_transfer_died_before_sent_then_failed_never_reached(
    db_url: str, clock: FakeClock
) -> None:
    sim = venue(clock, source="1000", contracts="0.08")
    pending = await _crash(db_url, clock, sim, die_before="transfer")

    clock.advance(30)
    report = await _restart(db_url, clock, sim)

    # Not found at the venue: it never happened, so this cycle moves the collateral.
    assert [o.action.kind for o in report.outcomes] == [ActionKind.TRANSFER_IN]
    assert sim.source == 1000 - report.outcomes[0].action.amount
    async with await Journal.open(db_url, clock=clock) as journal:
        lost = await _action(journal, pending.client_id)
        assert lost is not None
        assert (lost.status, lost.error) == (ActionStatus.FAILED, "never reached the exchange")
