"""Writes the bot did not see settle by lookup, capabilities the venue lacks do not block
protection, and no failing cycle stays silent (issue 9 §2 and §3).

Real journal (SQLite in tmp_path), the simulated venue behind `ScriptedExchange`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.app.service import AccountRuntime, AccountService
from bot.domain.actions import ActionKind
from bot.domain.targets import Policy
from bot.exchange.port import CapabilityMissing, OutcomeUnknown
from bot.store.journal import Journal
from bot.store.records import ActionStatus, CycleStatus
from tests.integration.app.test_account_service import (
    ACCOUNT,
    BAND,
    BTC,
    FakeClock,
    ScriptedExchange,
    _action,
    alerts,
    contracts,
    leverage,
    service,
    venue,
)
from tests.support.postgres import BACKENDS, database_url

LOST = OutcomeUnknown("RequestTimeout: binanceusdm POST /fapi/v1/order")


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


async def texts(journal: Journal, clock: FakeClock, level: str | None = None) -> list[str]:
    return [a.text for a in await alerts(journal, clock) if level is None or a.level == level]


# -- orders whose reply was lost ----------------------------------------------------------


async def test_run_cycle_when_order_executed_but_reply_lost_then_found_same_cycle_and_ok(
    journal: Journal, clock: FakeClock
) -> None:
    sim = venue(clock, source="0", mark="40000")  # no collateral: the plan is an order
    exchange = ScriptedExchange(sim)
    exchange.lose_reply["create_order"] = LOST

    report = await service(exchange, journal, clock).run_cycle()

    (order,) = sim.state().orders.values()
    (outcome,) = report.outcomes
    assert outcome.ok and outcome.client_id == order.client_order_id
    record = await _action(journal, order.client_order_id)
    assert record is not None
    assert (record.status, record.exchange_id, record.filled) == (
        ActionStatus.OK,
        order.exchange_id,
        order.filled,
    )
    assert report.status is CycleStatus.OK
    assert exchange.calls.count("fetch_order_by_client_id") == 1
    assert any("rebalanced" in text for text in await texts(journal, clock))


async def test_run_cycle_when_order_reply_lost_and_never_executed_then_unknown_then_failed(
    journal: Journal, clock: FakeClock
) -> None:
    sim = venue(clock, source="0", mark="40000")
    exchange = ScriptedExchange(sim)
    exchange.refuse["create_order"] = LOST  # the request died on the way
    account = service(exchange, journal, clock)

    first = await account.run_cycle()
    (outcome,) = first.outcomes
    record = await _action(journal, outcome.client_id)
    assert record is not None and record.status is ActionStatus.UNKNOWN
    assert record.error is not None and "RequestTimeout" in record.error
    # Counted as done meanwhile: the order cooldown holds for its scope.
    activity = await journal.recent_activity(ACCOUNT, clock.now)
    assert outcome.action.reason.scope in activity.last_order_at
    (told,) = [t for t in await texts(journal, clock) if "UNKNOWN" in t]
    assert "counted as done" in told

    del exchange.refuse["create_order"]
    clock.advance(30)
    second = await account.run_cycle()

    record = await _action(journal, outcome.client_id)
    assert record is not None
    assert (record.status, record.error) == (ActionStatus.FAILED, "never reached the exchange")
    # No longer counted: the second cycle de-levers, once.
    assert [o.action.kind for o in second.outcomes] == [ActionKind.REDUCE_ORDER]
    assert len(sim.state().orders) == 1
    assert exchange.writes == ["create_order"]


# -- transfers whose reply was lost ------------------------------------------------------


async def test_run_cycle_when_transfer_executed_but_reply_lost_then_found_ok_and_capped(
    journal: Journal, clock: FakeClock
) -> None:
    sim = venue(clock, source="1000", contracts="0.08")  # 4x; a transfer brings it to 3x
    exchange = ScriptedExchange(sim)
    exchange.lose_reply["transfer"] = LOST

    report = await service(exchange, journal, clock).run_cycle()

    (outcome,) = report.outcomes
    assert outcome.ok
    record = await _action(journal, outcome.client_id)
    assert record is not None and (record.status, record.exchange_id) == (ActionStatus.OK, "T1")
    activity = await journal.recent_activity(ACCOUNT, clock.now)
    assert activity.transferred_today == outcome.action.amount
    assert sim.source == 1000 - outcome.action.amount


async def test_run_cycle_when_transfer_unknown_and_untraceable_then_counts_and_told_once(
    journal: Journal, clock: FakeClock
) -> None:
    sim = venue(clock, source="1000", contracts="0.08")
    exchange = ScriptedExchange(sim)
    exchange.transfers_untraceable = True
    exchange.lose_reply["transfer"] = LOST  # it happened; nobody can tell
    account = service(exchange, journal, clock)

    first = await account.run_cycle()
    clock.advance(30)
    await account.run_cycle()
    clock.advance(30)
    await account.run_cycle()

    (outcome,) = first.outcomes
    record = await _action(journal, outcome.client_id)
    assert record is not None and record.status is ActionStatus.UNKNOWN
    activity = await journal.recent_activity(ACCOUNT, clock.now)
    assert activity.transferred_today == outcome.action.amount
    assert exchange.writes == ["transfer"]  # never sent again
    assert exchange.calls.count("fetch_transfer") == 1  # not asked again either
    (told,) = [t for t in await texts(journal, clock) if "UNKNOWN" in t]
    assert "counted as done" in told


async def test_run_cycle_when_transfer_unknown_with_a_daily_cap_then_cap_counts_it(
    journal: Journal, clock: FakeClock
) -> None:
    sim = venue(clock, source="1000", contracts="0.08")
    exchange = ScriptedExchange(sim)
    exchange.transfers_untraceable = True
    exchange.refuse["transfer"] = LOST  # it did NOT happen, but nobody can tell
    runtime = AccountRuntime(
        name=ACCOUNT, exchange=exchange, targets=BAND,
        policy=Policy(cooldown=timedelta(minutes=5), daily_transfer_cap=Decimal(400)),
        interval=timedelta(seconds=30),
    )  # fmt: skip
    account = AccountService(runtime, journal, clock)

    first = await account.run_cycle()
    (unknown,) = first.outcomes
    del exchange.refuse["transfer"]
    clock.advance(30)
    second = await account.run_cycle()

    # The cap is 400 and the unknown transfer counts: what is left is moved, no more.
    moved = [o.action.amount for o in second.outcomes if o.action.kind is ActionKind.TRANSFER_IN]
    assert sum(moved, Decimal(0)) <= Decimal(400) - unknown.action.amount


# -- a capability the venue lacks ----------------------------------------------------------


async def test_run_cycle_when_transfer_not_supported_then_same_cycle_delevers_with_orders(
    journal: Journal, clock: FakeClock
) -> None:
    # Binance demo: the planner moves collateral from spot, ccxt has no sapi host there.
    sim = venue(clock)  # 5x
    exchange = ScriptedExchange(sim)
    exchange.refuse["transfer"] = CapabilityMissing("binanceusdm: demo has no sapi host")
    account = service(exchange, journal, clock)

    first = await account.run_cycle()

    assert [(o.action.kind, o.status) for o in first.outcomes] == [
        (ActionKind.TRANSFER_IN, ActionStatus.FAILED),
        (ActionKind.REDUCE_ORDER, ActionStatus.OK),
    ]
    assert abs(leverage(sim) - 3) < Decimal("0.05")
    assert sim.source == 300  # untouched
    assert first.status is CycleStatus.OK
    assert account.transfers_unsupported

    # Later the price falls again: orders only, the transfer is not tried again.
    sim.set_mark(BTC, sim.mark(BTC) * Decimal("0.9"))
    clock.advance(600)
    second = await account.run_cycle()

    assert [o.action.kind for o in second.outcomes] == [ActionKind.REDUCE_ORDER]
    assert "transfer" not in exchange.calls  # refused each time before reaching the venue
    told = [t for t in await texts(journal, clock) if "cannot do" in t]
    assert len(told) == 1 and "demo has no sapi host" in told[0]
    assert contracts(sim) < Decimal("0.1")


# -- never silent ----------------------------------------------------------------------


async def test_run_cycle_when_any_exception_repeats_then_alert_names_it_after_threshold(
    journal: Journal, clock: FakeClock
) -> None:
    exchange = ScriptedExchange(venue(clock, contracts="0.06"))
    exchange.snapshot_errors = [ValueError("could not convert string to float: ''")] * 3
    account = service(exchange, journal, clock, unreachable_after=3)

    for _ in range(3):
        report = await account.run_cycle()
        clock.advance(30)

    assert report.status is CycleStatus.FAILED
    assert await texts(journal, clock) == [
        "[main] cycle failing for 3 cycles: ValueError: could not convert string to float: ''"
    ]


async def test_run_cycle_when_cycle_fails_after_a_good_snapshot_then_streak_still_counts(
    journal: Journal, clock: FakeClock
) -> None:
    # A bug after the snapshot (here in the adapter's order path) used to reset the streak.
    exchange = ScriptedExchange(venue(clock, source="0", mark="40000"))
    exchange.refuse["create_order"] = KeyError("filled")
    account = service(exchange, journal, clock, unreachable_after=3)

    for _ in range(3):
        await account.run_cycle()
        clock.advance(30)

    failing = [t for t in await texts(journal, clock) if "cycle failing" in t]
    assert failing == ["[main] cycle failing for 3 cycles: KeyError: 'filled'"]


@dataclass
class BrokenJournal:
    """The journal with its database gone at one call (`fails`): it raises as SQLite would."""

    journal: Journal
    fails: str
    error: Exception

    def __getattr__(self, name: str) -> Any:
        if name != self.fails:
            return getattr(self.journal, name)

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise self.error

        return broken


def on_broken_journal(
    journal: Journal, clock: FakeClock, fails: str, error: Exception
) -> tuple[ScriptedExchange, AccountService]:
    exchange = ScriptedExchange(venue(clock))
    runtime = AccountRuntime(
        name=ACCOUNT, exchange=exchange, targets=BAND, policy=Policy(),
        interval=timedelta(seconds=30),
    )  # fmt: skip
    broken = BrokenJournal(journal, fails, error)
    return exchange, AccountService(runtime, broken, clock)  # type: ignore[arg-type]


def log_alerts(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.message for r in caplog.records if r.levelno >= logging.ERROR and "ALERT" in r.message
    ]


async def test_run_cycle_when_journal_cannot_start_a_cycle_then_logged_alert_and_no_crash(
    journal: Journal, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    error = OSError("unable to open database file")
    exchange, account = on_broken_journal(journal, clock, "start_cycle", error)

    with caplog.at_level(logging.ERROR):
        report = await account.run_cycle()

    assert report.status is CycleStatus.FAILED
    assert report.error == "OSError: unable to open database file"
    assert exchange.calls == []  # nothing read, nothing sent
    [alerted] = log_alerts(caplog)
    assert "journal unavailable" in alerted


async def test_run_cycle_when_journal_cannot_finish_a_cycle_then_logged_alert_and_no_raise(
    journal: Journal, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    _, account = on_broken_journal(journal, clock, "finish_cycle", OSError("disk I/O error"))

    with caplog.at_level(logging.ERROR):
        report = await account.run_cycle()

    assert report.status is CycleStatus.OK
    [alerted] = log_alerts(caplog)
    assert "at a cycle's end: OSError: disk I/O error" in alerted


@dataclass
class CountingJournal:
    """The real journal, counting how often the cycle asks for unknown actions."""

    journal: Journal
    unknown_queries: int = 0

    async def unknown_intents(self, *args: Any, **kwargs: Any) -> Any:
        self.unknown_queries += 1
        return await self.journal.unknown_intents(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.journal, name)


async def test_run_cycle_when_nothing_unknown_then_steady_cycles_skip_the_lookup_query(
    journal: Journal, clock: FakeClock
) -> None:
    counting = CountingJournal(journal)
    runtime = AccountRuntime(
        name=ACCOUNT, exchange=ScriptedExchange(venue(clock)), targets=BAND, policy=Policy(),
        interval=timedelta(seconds=30),
    )  # fmt: skip
    account = AccountService(runtime, counting, clock)  # type: ignore[arg-type]

    for _ in range(3):
        await account.run_cycle()
        clock.advance(30)

    # Once at start-up (a previous process may have left some), then not again.
    assert counting.unknown_queries == 1
