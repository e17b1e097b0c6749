"""`levbot backtest` end to end on real Binance slices: files, columns, who survives."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.entrypoints.cli import app

FIXTURES = Path(__file__).parents[2] / "fixtures" / "prices"
CRASH_DAY = FIXTURES / "btc_1m_2021-05-19.csv"
SUMMARY_KEYS = {
    "liquidated", "liquidation_time", "max_leverage", "time_in_band", "min_margin_headroom",
    "transfers", "orders", "collateral_added", "notional_reduced", "fees_paid",
    "slippage_cost", "final_equity", "backstop_fills", "stream_triggers", "backstop_orders",
}  # fmt: skip
ACTION_COLUMNS = ["timestamp", "kind", "symbol", "side", "amount", "price", "notional", "fee",
                  "reason"]  # fmt: skip
TIMELINE_COLUMNS = ["timestamp", "price", "wallet", "equity", "notional", "leverage",
                    "margin_ratio", "source_balance"]  # fmt: skip


THREE = ["--target", "3", "--min", "2", "--max", "4"]


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text().splitlines()))


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["backtest", *args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def crash_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("crash")
    code, output = run("--prices", str(CRASH_DAY), "--target", "5", "--min", "4", "--max", "6",
                       "--equity", "10000", "--reserve", "5000", "--out", str(out))  # fmt: skip
    assert code == 0, output
    return out


def test_backtest_when_crash_day_target_5_then_only_levbot_survives(crash_run: Path) -> None:
    summary = json.loads((crash_run / "summary.json").read_text())
    assert set(summary) == {"levbot", "levbot-poll", "none", "auto-margin", "periodic"}
    for figures in summary.values():
        assert set(figures) >= SUMMARY_KEYS
    assert summary["levbot"]["liquidated"] is False
    assert summary["none"]["liquidated"] is True
    assert summary["none"]["liquidation_time"].startswith("2021-05-19T")
    assert summary["levbot"]["min_margin_headroom"] > 0.5
    assert summary["levbot"]["time_in_band"] > 0.95
    assert summary["levbot"]["final_equity"] > summary["none"]["final_equity"]


def test_backtest_when_run_then_csvs_have_the_contract_columns(crash_run: Path) -> None:
    prices = {row["timestamp"] for row in read_csv(CRASH_DAY)}
    for policy in ("levbot", "levbot-poll", "none", "auto-margin", "periodic"):
        with (crash_run / policy / "actions.csv").open() as handle:
            actions = list(csv.DictReader(handle))
        with (crash_run / policy / "timeline.csv").open() as handle:
            timeline = list(csv.DictReader(handle))
        assert timeline and list(timeline[0].keys()) == TIMELINE_COLUMNS
        # Timestamps are the price file's own bar timestamps.
        assert {row["timestamp"] for row in timeline} <= prices
        assert {row["timestamp"] for row in actions} <= prices
    with (crash_run / "levbot" / "actions.csv").open() as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ACTION_COLUMNS
        rows = list(reader)
    kinds = {row["kind"] for row in rows}
    assert "transfer_in" in kinds
    assert kinds <= {"transfer_in", "transfer_out", "reduce_order", "stream_trigger",
                     "backstop_fill"}  # fmt: skip
    assert all(row["reason"] for row in rows)
    assert (crash_run / "report.png").stat().st_size > 10_000


def test_backtest_when_levbot_acts_then_leverage_returns_to_target(crash_run: Path) -> None:
    timeline: dict[str, list[float]] = {}
    for row in read_csv(crash_run / "levbot" / "timeline.csv"):
        timeline.setdefault(row["timestamp"], []).append(float(row["leverage"]))
    acted = {row["timestamp"] for row in read_csv(crash_run / "levbot" / "actions.csv")
             if row["kind"] in ("transfer_in", "reduce_order")}  # fmt: skip
    assert acted
    for stamp in acted:
        # A streamed cycle and the poll can share a bar: one of its rows is the cycle
        # that acted (the close may drift after it).
        assert any(4.5 < leverage < 5.5 for leverage in timeline[stamp]), timeline[stamp]


def test_backtest_when_perp_with_funding_and_short_then_funding_moves_equity(
    tmp_path: Path,
) -> None:
    prices = FIXTURES / "eth_perp_5m_2022-06-10_06-20.csv"
    funding = FIXTURES / "eth_perp_funding_2022-06-10_06-20.csv"
    outs = []
    for with_funding in (True, False):
        out = tmp_path / str(with_funding)
        args = ["--prices", str(prices), "--side", "short", "--target", "3", "--min", "2.5",
                "--max", "3.5", "--policy", "none", "--no-plot", "--out", str(out)]  # fmt: skip
        if with_funding:
            args += ["--funding", str(funding)]
        code, output = run(*args)
        assert code == 0, output
        outs.append(json.loads((out / "summary.json").read_text())["none"]["final_equity"])
    assert outs[0] != outs[1]


def test_backtest_when_isolated_margin_then_levbot_adds_margin(tmp_path: Path) -> None:
    code, output = run("--prices", str(CRASH_DAY), "--target", "5", "--min", "4", "--max", "6",
                       "--margin-mode", "isolated", "--policy", "levbot", "--no-plot",
                       "--out", str(tmp_path))  # fmt: skip
    assert code == 0, output
    summary = json.loads((tmp_path / "summary.json").read_text())["levbot"]
    assert summary["liquidated"] is False
    kinds = {row["kind"] for row in read_csv(tmp_path / "levbot" / "actions.csv")}
    assert "add_margin" in kinds


def test_backtest_when_bad_tick_file_then_survives_and_says_so(tmp_path: Path) -> None:
    code, output = run("--prices", str(FIXTURES / "eth_perp_1h_2020-03-12_03-14.csv"),
                       "--side", "short", "--target", "3", "--min", "2.5", "--max", "3.5",
                       "--no-plot", "--out", str(tmp_path))  # fmt: skip
    assert code == 0, output
    assert "bad tick at 1584064800000" in output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["levbot"]["liquidated"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "3", "--min", "3.5", "--max", "4"], "--min 3.5: must be below leverage"),
        (["--target", "abc", "--min", "1", "--max", "4"], "--target 'abc': not a number"),
        (["--target", "3", "--min", "2", "--max", "4", "--interval", "5x"], "--interval '5x'"),
        (["--target", "3", "--min", "2", "--max", "4", "--policy", "yolo"], "--policy yolo"),
        (
            ["--target", "3", "--min", "2", "--max", "4", "--symbol", "DOGE/USDT:USDT"],
            "--symbol DOGE/USDT:USDT",
        ),
        (["--target", "3", "--min", "2", "--max", "4", "--equity", "0"], "--equity 0"),
        (
            [*THREE, "--outage", "noon", "2021-05-19T12:00"],
            "--outage 'noon': not an ISO time",
        ),
        (
            [*THREE, "--outage", "2021-05-19T12:00", "2021-05-19T11:00"],
            "--outage 2021-05-19T12:00 2021-05-19T11:00: END must be after START",
        ),
        (
            [*THREE, "--outage", "2020-01-01T00:00", "2020-01-02T00:00"],
            "--outage 2020-01-01T00:00 2020-01-02T00:00: outside the price file",
        ),
    ],
)
def test_backtest_when_bad_arguments_then_one_line_error_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    code, output = run("--prices", str(CRASH_DAY), "--out", str(tmp_path), *args)
    assert code == 2
    assert message in output
    assert "Traceback" not in output


def test_backtest_when_prices_file_missing_then_clear_error(tmp_path: Path) -> None:
    code, output = run("--prices", str(tmp_path / "missing.csv"), "--target", "3", "--min", "2",
                       "--max", "4", "--out", str(tmp_path))  # fmt: skip
    assert code == 2
    assert "missing.csv: no such file" in output


def test_python_m_bot_when_help_then_lists_backtest() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "backtest", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0
    for flag in ("--prices", "--funding", "--symbol", "--side", "--target", "--min", "--max",
                 "--margin-mode", "--equity", "--reserve", "--interval", "--fee", "--slippage",
                 "--policy", "--outage", "--out"):  # fmt: skip
        assert flag in result.stdout


BAND = ["--target", "3", "--min", "2", "--max", "4"]


def test_backtest_when_outage_then_only_resting_stops_act_inside_it(tmp_path: Path) -> None:
    start, end = "2021-05-19T12:00", "2021-05-19T16:00Z"
    code, output = run("--prices", str(CRASH_DAY), "--target", "10", "--min", "8", "--max", "12",
                       "--interval", "5m", "--policy", "levbot", "--policy", "levbot-poll",
                       "--outage", start, end, "--out", str(tmp_path))  # fmt: skip
    assert code == 0, output
    window = (1_621_425_600_000, 1_621_440_000_000)
    for policy in ("levbot", "levbot-poll"):
        rows = read_csv(tmp_path / policy / "actions.csv")
        inside = {r["kind"] for r in rows if window[0] <= int(r["timestamp"]) < window[1]}
        assert inside <= {"backstop_fill"}, (policy, inside)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["levbot"]["backstop_orders"] > 0
    assert summary["levbot"]["stream_triggers"] > 0
    assert summary["levbot-poll"]["backstop_orders"] == 0
    assert (tmp_path / "report.png").stat().st_size > 10_000


@pytest.mark.parametrize("kind", ["existing file", "under a file"])
def test_backtest_when_out_unusable_then_one_line_error_before_the_run(
    tmp_path: Path, kind: str
) -> None:
    taken = tmp_path / "taken"
    taken.write_text("mine\n")
    out = taken if kind == "existing file" else taken / "sub"
    code, output = run("--prices", str(CRASH_DAY), *BAND, "--out", str(out))
    assert code == 2, output
    assert output.startswith(f"error: --out {out}:"), output
    assert len(output.strip().splitlines()) == 1, output
    assert "Traceback" not in output
    assert taken.read_text() == "mine\n"  # nothing ran, nothing was overwritten


def test_backtest_when_prices_is_a_directory_then_says_so(tmp_path: Path) -> None:
    code, output = run("--prices", str(tmp_path), *BAND, "--out", str(tmp_path / "o"))
    assert code == 2
    assert f"{tmp_path}: is a directory" in output
    assert "Traceback" not in output


def test_backtest_when_timestamps_in_seconds_then_error_names_file_and_fix(
    tmp_path: Path,
) -> None:
    rows = read_csv(CRASH_DAY)[:50]
    seconds = tmp_path / "seconds.csv"
    seconds.write_text(
        "timestamp,open,high,low,close,volume\n"
        + "".join(
            f"{int(r['timestamp']) // 1000},{r['open']},{r['high']},{r['low']},"
            f"{r['close']},{r['volume']}\n"
            for r in rows
        )
    )
    code, output = run("--prices", str(seconds), *BAND, "--out", str(tmp_path / "o"))
    assert code == 2
    assert f"{seconds}: " in output and "seconds" in output and "milliseconds" in output
    assert "Traceback" not in output


def test_backtest_when_done_then_summary_has_units_and_liquidation_time(crash_run: Path) -> None:
    code, output = run("--prices", str(CRASH_DAY), "--target", "5", "--min", "4", "--max", "6",
                       "--policy", "levbot", "--policy", "none", "--no-plot",
                       "--out", str(crash_run / "units"))  # fmt: skip
    assert code == 0, output
    summary = json.loads((crash_run / "units" / "summary.json").read_text())
    liquidated = summary["none"]["liquidation_time"]  # like 2021-05-19T13:05:00Z
    shown = liquidated.replace("T", " ")[:16] + " UTC"
    rows = {line.split("│")[1].strip(): line for line in output.splitlines() if "│" in line}
    assert shown in rows["none"]
    assert "no" in rows["levbot"].split("│")[2]
    levbot = summary["levbot"]
    assert f"{levbot['max_leverage']:.2f}x" in rows["levbot"]
    assert f"{levbot['time_in_band'] * 100:.1f}%" in rows["levbot"]
    assert f"{levbot['min_margin_headroom'] * 100:.1f}%" in rows["levbot"]
    assert f"{levbot['final_equity']:,.2f} USDT" in rows["levbot"]
