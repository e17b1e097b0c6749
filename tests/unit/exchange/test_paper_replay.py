"""The offline paper replay: when its clock starts, and that a restart carries on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from bot.domain.models import MarginMode, Side
from bot.exchange.sim.paper import PaperExchange, PaperSettings
from bot.exchange.sim.prices import Bar

BTC = "BTC/USDT:USDT"
T0 = datetime(2021, 5, 19, 13, 0, tzinfo=UTC)


def bars(count: int) -> list[Bar]:
    start = int(T0.timestamp() * 1000)
    return [
        Bar(start + i * 60_000, Decimal(50000 - i), Decimal(50001 - i), Decimal(49999 - i),
            Decimal(50000 - i))
        for i in range(count)
    ]  # fmt: skip


def settings(tmp_path: Path) -> PaperSettings:
    return PaperSettings(
        account="paper", symbol=BTC, side=Side.LONG, equity=Decimal(10000),
        reserve=Decimal(0), leverage=Decimal(2), margin_mode=MarginMode.CROSS,
        bar_seconds=1.0, fee=Decimal("0.0005"), slippage=Decimal(0), loop=False,
        feed=tmp_path / "feed.csv", state_file=tmp_path / "paper.json",
    )  # fmt: skip


async def test_replay_when_daemon_starts_slowly_then_first_look_sees_the_first_bar(
    tmp_path: Path,
) -> None:
    now = [T0]
    paper = PaperExchange(settings(tmp_path), lambda: now[0], bars(100))
    now[0] += timedelta(seconds=30)  # a slow start-up: imports, journal, streams

    first = await paper.fetch_snapshot()
    now[0] += timedelta(seconds=5)
    later = await paper.fetch_snapshot()

    assert first.positions[0].mark_price == Decimal(50000)
    assert later.positions[0].mark_price == Decimal(49995)


async def test_replay_when_restarted_then_it_carried_on_while_the_bot_was_dead(
    tmp_path: Path,
) -> None:
    now = [T0]
    paper = PaperExchange(settings(tmp_path), lambda: now[0], bars(100))
    await paper.fetch_snapshot()
    now[0] += timedelta(seconds=10)
    await paper.fetch_snapshot()
    now[0] += timedelta(seconds=20)  # dead for 20 s: the venue goes on

    restarted = PaperExchange(settings(tmp_path), lambda: now[0], bars(100))
    snapshot = await restarted.fetch_snapshot()

    assert snapshot.positions[0].mark_price == Decimal(49970)
