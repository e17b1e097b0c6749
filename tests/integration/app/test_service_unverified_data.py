"""The service's cycle on replies that do not verify (issue 9 §1): real ccxt against the
loopback Binance, a real SQLite journal.

A snapshot that fails verification is a failed read: no plan, no write, the reason
journaled, counted toward `unreachable_alert_after`. An unreadable source wallet is
unknown: the cycle runs, and waits instead of selling what a transfer would cover.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bot.app.service import AccountRuntime, AccountService
from bot.domain.planner import SOURCE_UNKNOWN_NOTE
from bot.domain.targets import Policy, Target, Targets
from bot.exchange.ccxt import CcxtExchange
from bot.exchange.port import UnverifiedData
from bot.store.journal import Journal
from bot.store.records import CycleStatus
from tests.integration.app.test_account_service import FakeClock, alerts
from tests.integration.exchange.loopback import LoopbackVenue
from tests.integration.exchange.venues import adapter_for, recorded_loopback, serve
from tests.support.postgres import BACKENDS, database_url

# The recorded Binance account runs BTC at 23x: far above this band, so a trusted
# snapshot always plans something.
BAND = Targets(Target(Decimal(3), Decimal(2), Decimal(4)))
WRITES = ("/fapi/v1/order", "/sapi/v1/asset/transfer", "/fapi/v1/positionMargin")


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


@pytest.fixture
async def venue() -> AsyncIterator[LoopbackVenue]:
    server = LoopbackVenue()
    await server.start()
    serve(server, "binanceusdm")
    try:
        yield server
    finally:
        await server.close()


def account_service(exchange: CcxtExchange, journal: Journal, clock: FakeClock) -> AccountService:
    runtime = AccountRuntime(
        name=exchange.name,
        exchange=exchange,
        targets=BAND,
        policy=Policy(),
        interval=timedelta(seconds=30),
        unreachable_after=3,
    )
    return AccountService(runtime, journal, clock)


def writes(venue: LoopbackVenue) -> list[str]:
    return [r.path for r in venue.requests if r.path in WRITES]


async def test_run_cycle_when_account_reply_is_empty_object_then_failed_read_no_write_alerted(
    venue: LoopbackVenue, journal: Journal, clock: FakeClock
) -> None:
    # `{}` for the futures account once read as W = 0: leverage ~1188, an emergency.
    venue.reply("GET", "/fapi/v3/account", {})
    async with adapter_for("binanceusdm", venue, clock=clock) as exchange:
        service = account_service(exchange, journal, clock)
        reports = []
        for _ in range(3):
            reports.append(await service.run_cycle())
            clock.advance(30)

    assert [r.status for r in reports] == [CycleStatus.FAILED] * 3
    assert all(r.plan is None for r in reports)
    assert writes(venue) == []
    cycles = await journal.history(exchange.name)
    assert all("the reply is not a complete JSON document" in (c.error or "") for c in cycles)
    texts = [a.text for a in await alerts(journal, clock)]
    assert any("unreachable for 3 cycles" in text for text in texts)


async def test_run_cycle_when_spot_wallet_reply_truncated_then_waits_and_sends_nothing(
    venue: LoopbackVenue, journal: Journal, clock: FakeClock
) -> None:
    # Read as a spot balance of 0, this cut-off reply once made the daemon sell instead
    # of the transfer every other cycle made.
    spot = json.dumps(recorded_loopback("binanceusdm", "GET /api/v3/account"))
    venue.reply("GET", "/api/v3/account", spot[: len(spot) // 2])
    async with adapter_for("binanceusdm", venue, clock=clock) as exchange:
        report = await account_service(exchange, journal, clock).run_cycle()

    assert report.status is CycleStatus.OK
    assert report.plan is not None and report.plan.actions == ()
    notes = [note for d in report.plan.decisions for note in d.notes]
    assert SOURCE_UNKNOWN_NOTE in notes
    assert writes(venue) == []


async def test_run_cycle_when_spot_wallet_reads_then_transfer_not_order(
    venue: LoopbackVenue, journal: Journal, clock: FakeClock
) -> None:
    # The same account with its spot wallet read: collateral goes in first.
    async with adapter_for("binanceusdm", venue, clock=clock) as exchange:
        report = await account_service(exchange, journal, clock).run_cycle()

    assert report.plan is not None
    assert [a.kind.value for a in report.plan.actions][:1] == ["transfer_in"]
    assert "/fapi/v1/order" not in writes(venue)


def test_unverified_data_is_a_temporary_error() -> None:
    from bot.exchange.port import TemporaryError

    assert issubclass(UnverifiedData, TemporaryError)
