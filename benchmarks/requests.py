"""`requests_per_steady_cycle`: the HTTP requests one steady cycle sends, per venue
(issue 12 §2: at most 2 everywhere, 1 on Binance USDⓈ-M).

A steady cycle is the daemon's own `AccountService` cycle (SQLite journal) on a real
`CcxtExchange`, with the account in its band, so nothing is planned. The requests are
counted where they arrive: the loopback venue the adapter tests use (real ccxt over
HTTP, answering with the recorded payloads in `tests/fixtures/ccxt/`). The first cycle
(markets, tiers, account mode, start-up reconciliation) is not counted.

Run alone: `python -m benchmarks.requests [cycles]`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from bot.app.service import AccountRuntime, AccountService
from bot.clock import utc_now
from bot.domain.summary import account_metrics
from bot.domain.targets import Policy, Target, Targets
from bot.exchange.ccxt import CcxtExchange
from bot.store.journal import Journal
from tests.integration.exchange.loopback import LoopbackVenue
from tests.integration.exchange.test_hyperliquid import hyperliquid_adapter, serve_hyperliquid
from tests.integration.exchange.venues import adapter_for, serve

VENUES = ("binanceusdm", "bybit", "okx", "hyperliquid")


def _adapter(exchange_id: str, venue: LoopbackVenue) -> CcxtExchange:
    if exchange_id == "hyperliquid":
        serve_hyperliquid(venue)
        return hyperliquid_adapter(venue)
    serve(venue, exchange_id)
    return adapter_for(exchange_id, venue)


async def _steady_requests(exchange_id: str, cycles: int, journal_dir: Path) -> float:
    venue = LoopbackVenue()
    await venue.start()
    try:
        async with _adapter(exchange_id, venue) as exchange:
            leverage = account_metrics(await exchange.fetch_snapshot()).leverage
            if leverage is None:
                raise RuntimeError(f"{exchange_id}: the recorded account has no leverage")
            # A band the account sits well inside: a steady cycle plans nothing.
            targets = Targets(Target(leverage, leverage / 2, leverage * 2))
            runtime = AccountRuntime(
                name=exchange_id, exchange=exchange, targets=targets, policy=Policy(),
                interval=timedelta(seconds=30),
            )  # fmt: skip
            url = f"sqlite:///{journal_dir / f'{exchange_id}.sqlite'}"
            journal = await Journal.open(url, clock=utc_now)
            try:
                service = AccountService(runtime, journal, utc_now)
                await service.run_cycle()
                venue.forget()
                for _ in range(cycles):
                    report = await service.run_cycle()
                    if report.plan is None or not report.plan.empty:
                        raise RuntimeError(f"{exchange_id}: the cycle was not steady: {report}")
            finally:
                await journal.close()
        return len(venue.requests) / cycles
    finally:
        await venue.close()


async def measure(cycles: int = 5) -> dict[str, float]:
    """Requests per steady cycle, by ccxt exchange id (for callers already in a loop)."""
    with tempfile.TemporaryDirectory() as tmp:
        return {
            exchange_id: await _steady_requests(exchange_id, cycles, Path(tmp))
            for exchange_id in VENUES
        }


def requests_per_steady_cycle(cycles: int = 5) -> dict[str, float]:
    """Requests per steady cycle, by ccxt exchange id: binanceusdm, bybit, okx,
    hyperliquid (runs its own event loop)."""
    return asyncio.run(measure(cycles))


if __name__ == "__main__":
    print(json.dumps(requests_per_steady_cycle(int(sys.argv[1]) if len(sys.argv) > 1 else 5)))
