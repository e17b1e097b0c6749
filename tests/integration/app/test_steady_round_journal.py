"""A steady round of many accounts costs the journal a few statements, not a few per
account: the cycles' rows go in batches, the owner's controls and each account's recent
activity are read once and kept (issue 12 §1)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from bot.app.service import AccountRuntime, AccountService
from bot.domain.models import Side
from bot.domain.targets import Policy, Target, Targets
from bot.domain.vocabulary import CycleStatus
from bot.exchange.sim.exchange import SimulatedExchange
from bot.exchange.sim.markets import binance_usdm_markets
from bot.store.journal import Journal
from tests.support.postgres import BACKENDS, database_url

NOW = datetime(2024, 5, 19, 12, 0, tzinfo=UTC)
BTC = "BTC/USDT:USDT"
ACCOUNTS = 40


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request, request.param, tmp_path / "levbot.sqlite")


@pytest.fixture
async def journal(db_url: str) -> AsyncIterator[Journal]:
    opened = await Journal.open(db_url, clock=lambda: NOW)
    try:
        yield opened
    finally:
        await opened.close()


def _services(journal: Journal) -> list[AccountService]:
    markets = binance_usdm_markets()
    services = []
    for index in range(ACCOUNTS):
        exchange = SimulatedExchange(
            markets=markets, clock=lambda: NOW, derivatives=Decimal(10000),
            source=Decimal(5000), account=f"acct{index}",
        )  # fmt: skip
        exchange.set_mark(BTC, Decimal(50000))
        exchange.open_position(BTC, Side.LONG, Decimal("0.6"))  # 3x: in band
        runtime = AccountRuntime(
            name=exchange.name, exchange=exchange,
            targets=Targets(Target(Decimal(3), Decimal("2.5"), Decimal("3.5"))),
            policy=Policy(), interval=timedelta(seconds=60),
        )  # fmt: skip
        services.append(AccountService(runtime, journal, lambda: NOW))
    return services


async def test_steady_round_when_many_accounts_then_a_few_statements_for_all(
    journal: Journal,
) -> None:
    services = _services(journal)
    await asyncio.gather(*(s.run_cycle() for s in services))  # start-up: reconcile, read
    seen: Counter[str] = Counter()

    def count(*args: Any) -> None:
        seen[str(args[2]).split()[0].upper()] += 1

    event.listen(journal.engine.sync_engine, "before_cursor_execute", count)
    try:
        reports = await asyncio.gather(*(s.run_cycle() for s in services))
    finally:
        event.remove(journal.engine.sync_engine, "before_cursor_execute", count)

    assert {r.status for r in reports} == {CycleStatus.OK}
    assert not any(r.outcomes for r in reports)
    # Per round, not per account: the cycle rows in an INSERT and an UPDATE or two (in
    # batches), the owner's controls re-read at most once or twice; no snapshot (none
    # changed), no recent-activity read (kept since the first round).
    data = seen["SELECT"] + seen["INSERT"] + seen["UPDATE"]
    assert data <= 8, seen
    history = await journal.history(limit=1000)
    assert len(history) == 2 * ACCOUNTS
    assert len(await journal.snapshots_since("acct0", NOW - timedelta(days=1))) == 1
