"""The /chart figure: markers per action kind, the band in the legend, UTC dates, y-axis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import matplotlib.dates as mdates

from bot.domain.actions import ActionKind
from bot.domain.outcomes import ActionStatus
from bot.domain.targets import Target
from bot.store.records import ActionRecord, SnapshotRecord
from bot.telegram.chart import chart_figure, leverage_chart

START = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)
TARGET = Target(D(5), D(4), D(6))


def snapshot(minutes: int, leverage: str) -> SnapshotRecord:
    return SnapshotRecord(
        id=minutes, account="paper", settle="USDT", taken_at=START + timedelta(minutes=minutes),
        wallet=D(1000), wallet_free=D(1000), equity=D(1000), notional=D(5000),
        leverage=D(leverage), margin_ratio=D("0.1"), source_balance=D(500), source_free=D(500),
        positions=(),
    )  # fmt: skip


def action(minutes: int, rule: str, before: str, kind: ActionKind) -> ActionRecord:
    when = START + timedelta(minutes=minutes)
    return ActionRecord(
        client_id=f"c{minutes}", account="paper", cycle_id=1, kind=kind, symbol="USDT",
        side=None, amount=D(100), rule=rule, scope="paper", leverage_before=D(before),
        leverage_after=D(5), reason=f"{rule} paper", status=ActionStatus.OK, exchange_id=None,
        filled=None, fill_price=None, fee=None, error=None, created_at=when, updated_at=when,
        dry_run=False,
    )  # fmt: skip


LEVERAGES = ((0, "5"), (60, "6.4"), (120, "5"), (180, "3.7"), (240, "5"), (300, "5.2"))
SNAPSHOTS = [snapshot(m, lev) for m, lev in LEVERAGES]
ACTIONS = [
    action(60, "de-lever", "6.4", ActionKind.TRANSFER_IN),
    action(180, "re-lever", "3.7", ActionKind.TRANSFER_OUT),
    action(300, "emergency", "5.2", ActionKind.REDUCE_ORDER),
]


def test_chart_when_actions_of_each_rule_then_distinct_markers_in_legend() -> None:
    axis = chart_figure("paper", SNAPSHOTS, ACTIONS, TARGET, "24h").axes[0]
    labels = [t.get_text() for t in axis.get_legend().get_texts()]
    assert {"de-lever", "re-lever", "emergency"} <= set(labels)
    paths = [c.get_paths()[0].vertices.tobytes() for c in axis.collections if c.get_label()
             in {"de-lever", "re-lever", "emergency"}]  # fmt: skip
    assert len(set(paths)) == 3  # three different marker shapes


def test_chart_when_drawn_then_band_in_the_legend() -> None:
    axis = chart_figure("paper", SNAPSHOTS, ACTIONS, TARGET, "24h").axes[0]
    labels = [t.get_text() for t in axis.get_legend().get_texts()]
    assert "band 4-6x" in labels and "target 5x" in labels


def test_chart_when_drawn_then_y_axis_frames_the_band_not_zero() -> None:
    bottom, top = chart_figure("paper", SNAPSHOTS, ACTIONS, TARGET, "24h").axes[0].get_ylim()
    assert 3 < bottom < 3.7 and 6.4 < top < 7.5


def test_chart_when_drawn_then_dates_show_month_in_utc() -> None:
    figure = chart_figure("paper", SNAPSHOTS, ACTIONS, TARGET, "24h")
    axis = figure.axes[0]
    assert "UTC" in axis.get_xlabel()
    formatter = axis.xaxis.get_major_formatter()
    assert isinstance(formatter, mdates.DateFormatter)
    # 2026-12-01 01:00 UTC, which is still 30 Nov in the Americas: the label must say Dec.
    assert formatter(mdates.date2num(datetime(2026, 12, 1, 1, 0, tzinfo=UTC))) == "01 Dec 01:00"


def test_leverage_chart_when_rendered_then_png_bytes() -> None:
    picture = leverage_chart("paper", SNAPSHOTS, ACTIONS, TARGET, "24h")
    assert picture[:8] == b"\x89PNG\r\n\x1a\n"
