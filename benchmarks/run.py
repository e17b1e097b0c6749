"""`make bench`: speed and memory figures for the README.

1. Backtest: 30 days of 1m bars (~43k) through all four policies (target: < 60 s).
"""

from __future__ import annotations

import resource
import time
from decimal import Decimal
from pathlib import Path

from bot.backtest.runner import Scenario, run_backtest
from bot.domain.models import Side
from bot.domain.targets import Target
from bot.exchange.sim.prices import load_prices

DATA = Path(__file__).parent / "data"


def bench_backtest() -> None:
    series = load_prices(DATA / "binance_spot_BTC_USDT_1m_2021-04-20_2021-05-20.csv")
    scenario = Scenario(
        symbol="BTC/USDT:USDT", side=Side.LONG,
        target=Target(Decimal(3), Decimal("2.5"), Decimal("3.5")), interval_ms=60_000,
    )  # fmt: skip
    started = time.perf_counter()
    cpu = time.process_time()
    run_backtest(scenario, series)
    wall = time.perf_counter() - started
    print(
        f"backtest: {len(series.bars)} 1m bars x 4 policies: wall {wall:.1f} s, "
        f"cpu {time.process_time() - cpu:.1f} s (target < 60 s)"
    )


def main() -> None:
    bench_backtest()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the benchmark process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
