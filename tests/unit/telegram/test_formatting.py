"""Reply texts built from journaled snapshots, including ones a venue left incomplete."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

from bot.domain.models import MarginMode, Position, Side
from bot.store.records import SnapshotRecord
from bot.telegram.formatting import positions_text

BTC = "BTC/USDT:USDT"


def record(*positions: Position) -> SnapshotRecord:
    return SnapshotRecord(
        id=1, account="main", settle="USDT", taken_at=datetime(2021, 5, 19, 12, tzinfo=UTC),
        wallet=D(1000), wallet_free=D(1000), equity=D(1000), notional=D(0), leverage=None,
        margin_ratio=None, source_balance=None, source_free=None, positions=positions,
    )  # fmt: skip


def btc(mark: str | None, mode: MarginMode = MarginMode.CROSS) -> Position:
    return Position(
        symbol=BTC, side=Side.LONG, contracts=D("0.1"), entry_price=D(50000),
        mark_price=None if mark is None else D(mark), margin_mode=mode,
        isolated_margin=D(1000) if mode is MarginMode.ISOLATED else D(0),
    )  # fmt: skip


def test_positions_text_when_marked_then_notional_and_isolated_leverage_shown() -> None:
    text = positions_text([("main", record(btc("52000", MarginMode.ISOLATED)))])
    # n = 5200; E_p = 1000 + 0.1 * 2000 = 1200; L = 4.33
    assert "notional 5,200.00" in text
    assert "leverage 4.33" in text


def test_positions_text_when_mark_price_missing_then_na_not_an_error() -> None:
    text = positions_text(
        [("main", record(btc(None))), ("iso", record(btc(None, MarginMode.ISOLATED)))]
    )
    assert text.count("mark n/a, notional n/a") == 2
    assert "leverage n/a" in text
