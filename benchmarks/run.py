"""`make bench`: speed and memory figures for the README.

1. Backtest: 30 days of 1m bars (~43k) through all four policies (target: < 60 s).
2. Daemon: one process, 1,000 simulated accounts x 3 positions, every account's full
   cycle (snapshot, plan, journal to SQLite, execute, verify) - wall and CPU per round.
3. Requests per account per steady cycle for each real exchange profile, counted at a
   loopback server that real ccxt talks to.
4. Breach to order: a mark past a trigger at the paper venue's websocket to the
   reduce-only order at its order endpoint (benchmarks/breach_to_order.py; the figures
   also go to benchmarks/results.json).
"""

from __future__ import annotations

import asyncio
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from benchmarks.breach_to_order import bench_breach_to_order
from bot.app.service import AccountRuntime, AccountService
from bot.backtest.runner import Scenario, run_backtest
from bot.domain.models import Side
from bot.domain.targets import Policy, Target, Targets
from bot.exchange.sim.exchange import SimulatedExchange
from bot.exchange.sim.markets import binance_usdm_markets
from bot.exchange.sim.prices import load_prices
from bot.store.journal import Journal

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


def bench_accounts(count: int = 1000, rounds: int = 3) -> None:
    asyncio.run(_bench_accounts(count, rounds))


async def _bench_accounts(count: int, rounds: int) -> None:
    now = datetime.now(UTC)
    markets = binance_usdm_markets()
    btc, eth = "BTC/USDT:USDT", "ETH/USDT:USDT"
    with tempfile.TemporaryDirectory() as folder:
        journal = await Journal.open(f"sqlite:///{folder}/bench.sqlite")
        services = []
        exchanges = []
        for index in range(count):
            exchange = SimulatedExchange(
                markets=markets, clock=lambda: now, derivatives=Decimal(10000),
                source=Decimal(5000), account=f"acct{index}", hedge_mode=True,
            )  # fmt: skip
            exchange.set_mark(btc, Decimal(50000))
            exchange.set_mark(eth, Decimal(3000))
            exchange.open_position(btc, Side.LONG, Decimal("0.4"))
            exchange.open_position(btc, Side.SHORT, Decimal("0.1"))
            exchange.open_position(eth, Side.LONG, Decimal("4"))
            runtime = AccountRuntime(
                name=exchange.name, exchange=exchange,
                targets=Targets(Target(Decimal(3), Decimal("2.5"), Decimal("3.5"))),
                policy=Policy(), interval=timedelta(seconds=60),
            )  # fmt: skip
            services.append(AccountService(runtime, journal, lambda: now))
            exchanges.append(exchange)
        for round_index in range(rounds):
            # Round 0 rebalances every account (opened at ~3.9x); later rounds are steady.
            if round_index == 2:
                for exchange in exchanges:
                    exchange.set_mark(btc, Decimal(36000))
            started, cpu = time.perf_counter(), time.process_time()
            reports = await asyncio.gather(*(s.run_cycle() for s in services))
            wall = time.perf_counter() - started
            acted = sum(1 for r in reports if r.outcomes)
            label = ["first (all rebalance)", "steady (in band)", "price move"][round_index]
            print(
                f"daemon: {count} accounts x 3 positions, {label} round: wall {wall:.1f} s, "
                f"cpu {time.process_time() - cpu:.1f} s, {acted} accounts acted"
            )
        await journal.close()


def bench_requests(cycles: int = 5) -> None:
    asyncio.run(_bench_requests(cycles))


async def _bench_requests(cycles: int) -> None:
    """HTTP requests one steady cycle costs per account, counted at a loopback venue."""
    # The loopback venue and its canned replies live with the adapter's tests.
    from tests.integration.exchange.loopback import LoopbackVenue
    from tests.integration.exchange.venues import adapter_for, serve

    for exchange_id in ("binanceusdm", "bybit", "okx"):
        venue = LoopbackVenue()
        await venue.start()
        try:
            serve(venue, exchange_id)
            async with adapter_for(exchange_id, venue) as exchange:
                await exchange.fetch_snapshot()
                first = len(venue.requests)
                venue.forget()
                for _ in range(cycles):
                    await exchange.fetch_snapshot()
                steady = len(venue.requests) / cycles
        finally:
            await venue.close()
        print(
            f"requests: {exchange_id}: {steady:.0f} per steady cycle "
            f"(first cycle {first}, loading markets and tiers)"
        )


def main() -> None:
    bench_backtest()
    bench_accounts()
    bench_requests()
    bench_breach_to_order()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the benchmark process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
