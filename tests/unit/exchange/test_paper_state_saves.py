"""The paper venue writes its state file when the account changed, not on every close:
a daemon handing back or stopping with thousands of paper accounts fsynced each one's
unchanged file (issue 12 §6, 2,500 accounts: most of a 60 s shutdown)."""

from __future__ import annotations

import json
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
        Bar(start + i * 60_000, Decimal(50000), Decimal(50001), Decimal(49999), Decimal(50000))
        for i in range(count)
    ]


def settings(tmp_path: Path) -> PaperSettings:
    return PaperSettings(
        account="paper", symbol=BTC, side=Side.LONG, equity=Decimal(10000),
        reserve=Decimal(0), leverage=Decimal(2), margin_mode=MarginMode.CROSS,
        bar_seconds=60.0, fee=Decimal("0.0005"), slippage=Decimal(0), loop=False,
        feed=tmp_path / "feed.csv", state_file=tmp_path / "paper.json",
    )  # fmt: skip


def _written(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_ino, status.st_mtime_ns


async def test_close_when_nothing_changed_since_last_save_then_file_not_rewritten(
    tmp_path: Path,
) -> None:
    now = [T0]
    paper = PaperExchange(settings(tmp_path), lambda: now[0], bars(3))
    await paper.fetch_snapshot()  # the first look starts the replay clock...
    now[0] += timedelta(seconds=61)
    await paper.fetch_snapshot()  # ...and a bar passing saves it
    saved = _written(tmp_path / "paper.json")
    now[0] += timedelta(seconds=1)
    await paper.fetch_snapshot()  # no bar passed: nothing to save

    await paper.close()

    assert _written(tmp_path / "paper.json") == saved


async def test_close_when_first_look_not_saved_yet_then_close_saves_it(
    tmp_path: Path,
) -> None:
    now = [T0]
    paper = PaperExchange(settings(tmp_path), lambda: now[0], bars(3))
    now[0] += timedelta(seconds=30)  # a slow start-up before the daemon's first look
    await paper.fetch_snapshot()

    await paper.close()

    document = json.loads((tmp_path / "paper.json").read_text())
    assert datetime.fromisoformat(document["started_at"]) == now[0]
