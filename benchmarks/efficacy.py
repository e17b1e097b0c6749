"""Every policy on the real crash windows (docs/backtest-results.md; summary in the README).

    make efficacy        (or: .venv/bin/python -m benchmarks.efficacy)

Runs BTC and ETH 1m 2021-04-20 -> 05-20, BTC and ETH perp 5m June-July 2022 with
funding, and BTC and ETH perp 1h 2019-09 -> 2021-12 with funding (2020-03-12 and the
2020-21 rally), long and short, target 3 (band 2.5-3.5) and target 5 (band 4-6), equity 10000,
reserve 5000, interval = bar size, and prints a Markdown table per run.
"""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal
from pathlib import Path

from bot.backtest.runner import Scenario, run_backtest
from bot.domain.models import Side
from bot.domain.targets import Target
from bot.exchange.sim.prices import load_funding, load_prices

DATA = Path(__file__).parent / "data"
WINDOWS = [
    ("BTC 1m 2021-04-20..05-20", "binance_spot_BTC_USDT_1m_2021-04-20_2021-05-20.csv", None,
     "BTC/USDT:USDT"),
    ("ETH 1m 2021-04-20..05-20", "binance_spot_ETH_USDT_1m_2021-04-20_2021-05-20.csv", None,
     "ETH/USDT:USDT"),
    ("BTC perp 5m 2022-06..07", "binance_perp_BTC_USDT_5m_2022-06-01_2022-08-01.csv",
     "binance_perp_BTC_USDT_funding_2022-06-01_2022-08-01.csv", "BTC/USDT:USDT"),
    ("ETH perp 5m 2022-06..07", "binance_perp_ETH_USDT_5m_2022-06-01_2022-08-01.csv",
     "binance_perp_ETH_USDT_funding_2022-06-01_2022-08-01.csv", "ETH/USDT:USDT"),
    ("BTC perp 1h 2019-09..2021-12", "binance_perp_BTC_USDT_1h_2019-09_2021-12.csv",
     "binance_perp_BTC_USDT_funding_2019-09_2021-12.csv", "BTC/USDT:USDT"),
    ("ETH perp 1h 2019-09..2021-12", "binance_perp_ETH_USDT_1h_2019-09_2021-12.csv",
     "binance_perp_ETH_USDT_funding_2019-09_2021-12.csv", "ETH/USDT:USDT"),
]  # fmt: skip
BANDS = [(Decimal(3), Decimal("2.5"), Decimal("3.5")), (Decimal(5), Decimal(4), Decimal(6))]
COLUMNS = ["liquidated", "max_leverage", "time_in_band", "min_margin_headroom", "transfers",
           "orders", "collateral_added", "notional_reduced", "fees_paid", "slippage_cost",
           "final_equity"]  # fmt: skip


def one_run(job: tuple[str, str, str | None, str, str, int]) -> str:
    title, prices, funding, symbol, side, band_index = job
    target, low, high = BANDS[band_index]
    series = load_prices(DATA / prices)
    rates = load_funding(DATA / funding) if funding else ()
    scenario = Scenario(
        symbol=symbol, side=Side(side), target=Target(target, low, high),
        interval_ms=series.bar_ms,
    )  # fmt: skip
    results = run_backtest(scenario, series, rates)
    lines = [
        f"**{title}, {side}, target {target} (band {low}–{high})**",
        "",
        "| policy | " + " | ".join(COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for name, result in results.items():
        summary = result.summary()
        cells = []
        for column in COLUMNS:
            value = summary[column]
            if column == "liquidated" and value:
                value = f"**yes** {str(summary['liquidation_time'])[:16]}"
            elif column == "liquidated":
                value = "no"
            cells.append(str(value))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    jobs = [
        (title, prices, funding, symbol, side, band)
        for title, prices, funding, symbol in WINDOWS
        for band in range(len(BANDS))
        for side in ("long", "short")
    ]
    with ProcessPoolExecutor(max_workers=2) as pool:
        for table in pool.map(one_run, jobs):
            sys.stdout.write(table + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
