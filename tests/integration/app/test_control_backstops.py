"""The control layer's backstop lines: the words every channel (CLI, Telegram) shows."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bot.app.backstops import BackstopPreview
from bot.app.control import change_lines, ladder_lines, price
from bot.domain.backstop import BackstopChanges
from bot.domain.models import OrderSide, Side
from bot.domain.stops import Stop, StopOrder, StopStatus

BTC = "BTC/USDT:USDT"


def _stop(level: int, trigger: str) -> Stop:
    return Stop(
        scope="main", level=level, symbol=BTC, position_side=Side.LONG,
        amount=Decimal("0.5"), trigger_price=Decimal(trigger),
    )  # fmt: skip


def _order(trigger: str) -> StopOrder:
    return StopOrder(
        client_order_id="c1", exchange_id="e1", symbol=BTC, side=OrderSide.SELL,
        amount=Decimal("0.5"), trigger_price=Decimal(trigger), status=StopStatus.OPEN,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("value", "shown"),
    [("30447.05680929945714920867127", "30,447.06"), ("1.234567", "1.23457"),
     ("0.0000123456789", "0.0000123457"), ("65000.1", "65,000.10"), ("0", "0")],
)  # fmt: skip
def test_price_when_shown_then_six_significant_digits_and_at_least_two_decimals(
    value: str, shown: str
) -> None:
    assert price(Decimal(value)) == shown


def test_change_lines_when_ladder_moves_then_place_cancel_keep_in_that_order() -> None:
    changes = BackstopChanges(
        place=(_stop(1, "31000"),), cancel=(_order("30000"),), keep=(_order("25000"),)
    )
    preview = BackstopPreview((_stop(1, "31000"),), (_order("30000"), _order("25000")), changes)

    assert change_lines(preview) == [
        f"place L1 sell 0.5 {BTC} @ 31,000.00",
        f"cancel sell 0.5 {BTC} @ 30,000.00",
        f"keep sell 0.5 {BTC} @ 25,000.00",
    ]


def test_ladder_lines_when_nothing_wanted_then_the_planner_notes_or_why() -> None:
    note = "backstop: BTC/USDT:USDT:long has no usable mark price; not protected"
    noted = BackstopPreview((), (), BackstopChanges(), (note,))
    empty = BackstopPreview((), (), BackstopChanges())

    assert ladder_lines(noted) == [note]
    assert ladder_lines(empty) == ["backstop: none wanted (no position to protect)"]
    assert change_lines(empty) == ["nothing resting, nothing to place"]
