"""report.png: what a trader must find on it, asserted on the figure, not on pixels."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

import matplotlib.dates as mdates

from bot.backtest.report import plot_report, report_figure
from bot.backtest.runner import ActionRow, PolicyResult, Scenario, TimelineRow
from bot.domain.models import Side
from bot.domain.targets import Target

HOUR = 3_600_000
START = 1_654_041_600_000  # 2022-06-01 00:00 UTC
SCENARIO = Scenario(symbol="BTC/USDT:USDT", side=Side.LONG, target=Target(D(5), D(4), D(6)))


def timeline(leverages: list[str]) -> list[TimelineRow]:
    return [
        TimelineRow(
            START + i * HOUR,
            D(30000 - i),
            D(10000),
            D(10000 - 10 * i),
            D(50000),
            D(lev),
            D("0.1"),
            D(5000 - 100 * i),
        )
        for i, lev in enumerate(leverages)
    ]


def action(hour: int, kind: str, reason: str) -> ActionRow:
    return ActionRow(START + hour * HOUR, kind, "BTC/USDT:USDT", "in", D(100), None, D(100),
                     D(0), reason)  # fmt: skip


def results() -> dict[str, PolicyResult]:
    levbot = PolicyResult("levbot", timeline=timeline(["5", "6.5", "5", "3.5", "5"]))
    levbot.actions = [
        action(1, "transfer_in", "de-lever x: leverage 6.50 -> 5.00"),
        action(2, "reduce_order", "de-lever x: leverage 6.50 -> 5.00"),
        action(3, "transfer_out", "re-lever x: leverage 3.50 -> 5.00"),
    ]
    auto = PolicyResult("auto-margin", timeline=timeline(["5", "7", "9", "12", "20"]))
    auto.actions = [action(2, "transfer_in", "emergency x: leverage n/a -> n/a")]
    # `none` follows auto-margin exactly until auto-margin acts: the case that hid it.
    none = PolicyResult(
        "none", timeline=timeline(["5", "7", "9"]), liquidation_time=START + 2 * HOUR
    )
    return {"levbot": levbot, "none": none, "auto-margin": auto}


def legend_texts(figure: object) -> set[str]:
    texts: set[str] = set()
    for axis in figure.axes:  # type: ignore[attr-defined]
        for legend in [*axis.artists, axis.get_legend()]:
            if legend is not None and hasattr(legend, "get_texts"):
                texts |= {t.get_text() for t in legend.get_texts()}
    return texts


def test_report_figure_when_drawn_then_equity_panel_under_price_and_leverage() -> None:
    figure = report_figure(SCENARIO, results())
    price, leverage, equity = figure.axes
    assert "close" in price.get_ylabel()
    assert "leverage" in leverage.get_ylabel()
    assert equity.get_ylabel() == "USDT"
    assert "source wallet" in equity.get_title()
    # one derivatives-equity and one source-wallet line per policy
    assert len(equity.get_lines()) >= 2 * 3


def test_report_figure_when_drawn_then_every_marker_and_liquidation_in_legend() -> None:
    texts = legend_texts(report_figure(SCENARIO, results()))
    needles = ("collateral in", "reduce-only order", "re-lever", "emergency", "liquidation",
               "band 4-6x", "none (liquidated 2022-06-01 02:00 UTC)")  # fmt: skip
    for needle in needles:
        assert any(needle in text for text in texts), (needle, texts)


def test_report_figure_when_none_coincides_with_a_baseline_then_none_drawn_on_top() -> None:
    leverage = report_figure(SCENARIO, results()).axes[1]
    lines = {line.get_label(): line for line in leverage.get_lines()}
    none = next(line for label, line in lines.items() if label.startswith("none"))
    auto = lines["auto-margin"]
    assert none.get_zorder() > auto.get_zorder()
    assert none.get_linestyle() != auto.get_linestyle()


def test_report_figure_when_drawn_then_dates_in_utc_with_a_date_formatter() -> None:
    equity = report_figure(SCENARIO, results()).axes[2]
    assert "UTC" in equity.get_xlabel()
    formatter = equity.xaxis.get_major_formatter()
    assert isinstance(formatter, mdates.ConciseDateFormatter)
    assert str(formatter._tz) == "UTC"


def test_plot_report_when_written_then_a_png(tmp_path: Path) -> None:
    plot_report(tmp_path / "report.png", SCENARIO, results())
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_figure_when_stops_filled_streams_fired_and_outage_then_marked_and_shaded() -> None:
    scenario = replace(SCENARIO, outage=(START + HOUR, START + 3 * HOUR))
    levbot = PolicyResult("levbot", timeline=timeline(["5", "6.5", "5", "3.5", "5"]))
    levbot.actions = [
        ActionRow(START + HOUR, "stream_trigger", "BTC/USDT:USDT", "below", D(0), D(29500),
                  D(0), D(0), "leverage 6.00 > max 6 at mark 29500"),
        # Between two cycles: drawn on the next timeline row, at its own fill price.
        ActionRow(START + 2 * HOUR - 60_000, "backstop_fill", "BTC/USDT:USDT", "sell", D(1),
                  D(29000), D(29000), D("14.5"), "backstop: stop at 29010 triggered"),
    ]  # fmt: skip
    figure = report_figure(scenario, {"levbot": levbot})
    texts = legend_texts(figure)
    for needle in ("backstop fill", "stream trigger", "outage"):
        assert any(needle in text for text in texts), (needle, texts)
    price = figure.axes[0]
    drawn = {tuple(point) for c in price.collections for point in c.get_offsets().tolist()}
    assert {y for _, y in drawn} >= {29500.0, 29000.0}
    # the outage is shaded on all three panels
    assert all(axis.patches for axis in figure.axes)
