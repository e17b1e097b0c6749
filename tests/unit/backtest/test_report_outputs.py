"""The backtest's files as a reader gets them: timeline.csv cell by cell as the csv module
writes them, report.png's dates as Matplotlib reads them from datetimes."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
import pytest

from bot.backtest.report import TIMELINE_COLUMNS, report_figure, write_outputs
from bot.backtest.runner import PolicyResult, Scenario, TimelineRow
from bot.domain.models import Side
from bot.domain.targets import Target

HOUR = 3_600_000
START = 1_654_041_600_000  # 2022-06-01 00:00 UTC
SCENARIO = Scenario(symbol="BTC/USDT:USDT", side=Side.LONG, target=Target(D(5), D(4), D(6)))


def row(i: int, leverage: D | None = D("5"), price: D = D("30000.1")) -> TimelineRow:
    return TimelineRow(START + i * HOUR + 123, price, D(10000), D("9999.12345678912"),
                       D("50000.50"), leverage, None if leverage is None else D("0.1"),
                       D("5000"))  # fmt: skip


def cell(value: object) -> str:
    """DESIGN.md §8's cell: empty for none, Decimals to 8 places without trailing zeros."""
    if value is None:
        return ""
    if isinstance(value, D):
        text = f"{value:.8f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return str(value)


def written_by_csv_module(timeline: list[TimelineRow]) -> str:
    handle = io.StringIO(newline="")
    writer = csv.writer(handle)
    writer.writerow(TIMELINE_COLUMNS)
    for line in timeline:
        writer.writerow([cell(getattr(line, c)) for c in TIMELINE_COLUMNS])
    return handle.getvalue()


@pytest.mark.parametrize(
    "timeline",
    [
        [row(i) for i in range(50)],
        # no leverage at all (equity gone) on some rows
        [row(0), row(1, leverage=None), row(2), row(3, leverage=None)],
        [row(0, leverage=D("3.051477079694487762669998444")), row(1, leverage=D("1E+2")),
         row(2, leverage=D("0E-12")), row(3, leverage=D("-0")), row(4, leverage=D("1E-9")),
         row(5, leverage=D("0.000000005")), row(6, leverage=D("0.000000015")),
         row(7, leverage=D("123456789012345678901234567.8"))],
        # not finite: written cell by cell
        [row(0), row(1, leverage=D("NaN")), row(2, leverage=D("Infinity"))],
        [row(0, price=D("-Infinity")), row(1)],
        [],
    ],
    ids=["plain", "no-leverage", "exponents-and-zeros", "nan-and-infinity", "minus-infinity",
         "empty"],
)  # fmt: skip
def test_write_outputs_when_timeline_written_then_as_the_csv_module_writes_each_cell(
    tmp_path: Path, timeline: list[TimelineRow]
) -> None:
    write_outputs(tmp_path, SCENARIO, {"levbot": PolicyResult("levbot", timeline=timeline)},
                  plot=False)  # fmt: skip
    written = (tmp_path / "levbot" / "timeline.csv").read_bytes()
    assert written == written_by_csv_module(timeline).encode()


def test_report_figure_when_drawn_then_lines_at_the_dates_of_the_timestamps() -> None:
    timeline = [row(i) for i in range(5)]
    figure = report_figure(SCENARIO, {"levbot": PolicyResult("levbot", timeline=timeline)})
    as_datetimes = mdates.date2num([datetime.fromtimestamp(r.timestamp / 1000, UTC)
                                    for r in timeline])  # fmt: skip
    for axis in figure.axes:  # type: ignore[attr-defined]
        assert str(axis.xaxis.get_units()) == "UTC"
        for line in axis.get_lines():
            drawn = np.asarray(line.get_xydata())[:, 0]
            if len(drawn) == len(timeline):
                assert drawn.tobytes() == np.asarray(as_datetimes, dtype=float).tobytes()


def test_report_figure_when_every_timeline_empty_then_drawn_without_date_units() -> None:
    figure = report_figure(SCENARIO, {"levbot": PolicyResult("levbot")})
    assert figure.axes[0].xaxis.get_units() is None  # type: ignore[attr-defined]


def test_write_outputs_when_a_policy_folder_cannot_be_made_then_its_error_raised_here(
    tmp_path: Path,
) -> None:
    # The CSVs are written beside the drawing (in a forked child where there is fork):
    # whatever stops them is still this call's own exception.
    (tmp_path / "levbot").write_text("a file where the policy's folder goes")
    with pytest.raises(FileExistsError):
        write_outputs(tmp_path, SCENARIO, {"levbot": PolicyResult("levbot", timeline=[row(0)])})


def test_write_outputs_when_plotted_then_every_file_written(tmp_path: Path) -> None:
    results = {"levbot": PolicyResult("levbot", timeline=[row(i) for i in range(3)]),
               "none": PolicyResult("none", timeline=[row(i) for i in range(2)])}  # fmt: skip
    write_outputs(tmp_path, SCENARIO, results)
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    for name, result in results.items():
        assert (tmp_path / name / "timeline.csv").read_bytes() == written_by_csv_module(
            result.timeline
        ).encode()
        assert (tmp_path / name / "actions.csv").read_text().startswith("timestamp,kind,")
