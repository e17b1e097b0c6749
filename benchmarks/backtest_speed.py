"""Issue 12 §4: `levbot backtest` over 60,000 5m bars x 4 policies, report included.

The input is real 5m data: benchmarks/data has no 5m series that long, so the BTC and
ETH perp 5m files (2022-06..07, 17,568 bars each) are laid end to end, BTC, ETH, BTC,
ETH, to 60,000 bars: each file's prices scaled so it opens at the previous one's close
(its returns unchanged, no gap), rounded to BTC's 0.1 tick, timestamps shifted to follow
on. Run: `.venv/bin/python -m benchmarks.backtest_speed`.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

DATA = Path(__file__).parent / "data"
SOURCES = (
    DATA / "binance_perp_BTC_USDT_5m_2022-06-01_2022-08-01.csv",
    DATA / "binance_perp_ETH_USDT_5m_2022-06-01_2022-08-01.csv",
)
BARS = 60_000
POLICIES = ("levbot", "none", "auto-margin", "periodic")
GOAL_S = 10.0


def write_60k_series(path: Path, bars: int = BARS) -> None:
    """The 60,000-bar 5m input described in the module docstring."""
    segments = [_read(source) for source in SOURCES]
    rows: list[tuple[int, Decimal, Decimal, Decimal, Decimal, str]] = []
    index = 0
    while len(rows) < bars:
        segment = segments[index % len(segments)]
        index += 1
        first_stamp, first_open = segment[0][0], segment[0][1]
        scale = rows[-1][4] / first_open if rows else Decimal(1)
        start = rows[-1][0] + 300_000 if rows else first_stamp
        for stamp, *prices, volume in segment:
            o, h, lo, c = ((p * scale).quantize(Decimal("0.1")) for p in prices)
            rows.append((start + stamp - first_stamp, o, h, lo, c, volume))
            if len(rows) == bars:
                break
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "open", "high", "low", "close", "volume"])
        writer.writerows([str(x) for x in row] for row in rows)


def _read(path: Path) -> list[tuple[int, Decimal, Decimal, Decimal, Decimal, str]]:
    with path.open() as handle:
        reader = csv.reader(handle)
        next(reader)
        return [
            (int(t), Decimal(o), Decimal(h), Decimal(lo), Decimal(c), v)
            for t, o, h, lo, c, v in reader
        ]


def backtest_60k_x4_s(policies: tuple[str, ...] = POLICIES) -> dict[str, object]:
    """Wall and CPU seconds of the whole command (start-up, load, replay, CSVs, report.png)."""
    with tempfile.TemporaryDirectory() as folder:
        prices = Path(folder) / "btc_eth_5m_60k.csv"
        write_60k_series(prices)
        command = [
            sys.executable, "-c", "from bot.entrypoints.cli import main; main()", "backtest",
            "--prices", str(prices), "--symbol", "BTC/USDT:USDT",
            "--target", "3", "--min", "2.5", "--max", "3.5", "--out", str(Path(folder) / "out"),
            *(arg for name in policies for arg in ("--policy", name)),
        ]  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env={**os.environ})
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        summary = json.loads((Path(folder) / "out" / "summary.json").read_text())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "backtest_60k_x4_s": round(wall, 2),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "bars": BARS,
        "policies": list(policies),
        # A policy liquidated on the way stops there (`none` and `auto-margin` do).
        "liquidated_at": {name: figures["liquidation_time"] for name, figures in summary.items()},
        "goal_s": GOAL_S,
    }


if __name__ == "__main__":
    print(json.dumps(backtest_60k_x4_s(), indent=2))
    print(json.dumps(backtest_60k_x4_s(("levbot", "levbot-poll", "none", "auto-margin",
                                         "periodic")), indent=2))  # fmt: skip
