"""`rss_mib_1000_ccxt_accounts`: peak memory of one process carrying 1,000 real ccxt
accounts on Binance USDⓈ-M with the venue's full market list (issue 12 §3).

Each account is a real `CcxtExchange` (binanceusdm + the spot `binance` instance for its
collateral wallet, its own API key) built as the daemon builds it, pointed by
`api_base_url` at a loopback venue that serves a recorded full `exchangeInfo` (442
perpetuals, tests/fixtures/ccxt/binanceusdm_full_markets.json.gz) and leverage brackets
for every symbol; every account then takes one snapshot (markets, tiers, balances,
positions, spot wallet). The accounts live in a fresh subprocess, which reports its peak
RSS (VmHWM). `shared`: one market registry for the process (what the daemon does);
`unshared`: each account loads and keeps its own markets, as before issue 12 §3.
Times are wall clock and the measured process's CPU (the CPU figures hold on a busy host).

Run alone: `python -m benchmarks.markets_rss [accounts] [unshared_accounts]`.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
FULL_MARKETS = ROOT / "tests" / "fixtures" / "ccxt" / "binanceusdm_full_markets.json.gz"
GOAL_MIB = 400.0
CONCURRENCY = 50
MARKETS = "/fapi/v1/exchangeInfo"
TIERS = "/fapi/v1/leverageBracket"


def rss_1000_ccxt_accounts(accounts: int = 1000, unshared_accounts: int = 100) -> dict[str, Any]:
    """Peak RSS (MiB) and build time of `accounts` real ccxt accounts sharing markets, and
    of `unshared_accounts` each holding its own (0 skips that run; ~9 MiB and ~0.5 s an
    account, so 100 by default), plus the requests the venue saw for markets and tiers."""
    with _LoopbackThread() as venue:
        shared = _child(venue, accounts, "shared")
        unshared = _child(venue, unshared_accounts, "unshared") if unshared_accounts else None
    symbols = len(json.loads(gzip.decompress(FULL_MARKETS.read_bytes()))["exchangeInfo"]["symbols"])
    result: dict[str, Any] = {
        "goal_mib": GOAL_MIB,
        "accounts": accounts,
        "symbols": symbols,
        "rss_mib": shared["rss_mib"],
        "build_s": shared["build_s"],
        "build_cpu_s": shared["build_cpu_s"],
        "first_snapshots_s": shared["snapshots_s"],
        "first_snapshots_cpu_s": shared["snapshots_cpu_s"],
        "markets_requests": shared["markets_requests"],
        "tiers_requests": shared["tiers_requests"],
        "snapshot_errors": shared["errors"],
    }
    if unshared is not None:
        result["unshared"] = {
            "accounts": unshared_accounts,
            "rss_mib": unshared["rss_mib"],
            "build_s": unshared["build_s"],
            "build_cpu_s": unshared["build_cpu_s"],
            "first_snapshots_s": unshared["snapshots_s"],
            "first_snapshots_cpu_s": unshared["snapshots_cpu_s"],
            "markets_requests": unshared["markets_requests"],
            "tiers_requests": unshared["tiers_requests"],
            "snapshot_errors": unshared["errors"],
        }
    return result


def _child(venue: _LoopbackThread, accounts: int, mode: str) -> dict[str, Any]:
    venue.forget()
    command = [sys.executable, "-m", "benchmarks.markets_rss", "--child", mode, str(accounts)]
    done = subprocess.run(
        [*command, venue.url], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"markets_rss child failed:\n{done.stderr[-4000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["markets_requests"] = venue.count(MARKETS)
    figures["tiers_requests"] = venue.count(TIERS)
    return figures


class _LoopbackThread:
    """The loopback venue (tests/integration/exchange) on its own thread and loop, so the
    measured process holds only the accounts."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._venue: Any = None

    def __enter__(self) -> _LoopbackThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._venue.close(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    async def _start(self) -> None:
        from tests.integration.exchange.loopback import LoopbackVenue
        from tests.integration.exchange.venues import serve

        full = json.loads(gzip.decompress(FULL_MARKETS.read_bytes()))
        venue = LoopbackVenue()
        await venue.start()
        serve(venue, "binanceusdm")
        venue.reply("GET", MARKETS, json.dumps(full["exchangeInfo"]))
        venue.reply("GET", TIERS, json.dumps(full["leverageBracket"]))
        self._venue = venue

    @property
    def url(self) -> str:
        url: str = self._venue.url
        return url

    def forget(self) -> None:
        self._loop.call_soon_threadsafe(self._venue.forget)

    def count(self, path: str) -> int:
        async def counted() -> int:
            return len(self._venue.calls(path))

        return asyncio.run_coroutine_threadsafe(counted(), self._loop).result(timeout=30)


# -- the measured process --------------------------------------------------------------


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


async def _run_child(mode: str, accounts: int, url: str) -> dict[str, Any]:
    from bot.exchange.ccxt import CcxtExchange, CcxtSettings
    from bot.exchange.ccxt.shared_markets import MarketRegistry

    registry = MarketRegistry() if mode == "shared" else None
    started, cpu = time.perf_counter(), time.process_time()
    built = [
        CcxtExchange(
            CcxtSettings(
                account=f"acct-{n:04d}",
                exchange_id="binanceusdm",
                environment="live",
                credentials={"api_key": f"bench-key-{n:04d}", "secret": f"bench-secret-{n:04d}"},
                api_base_url=url,
            ),
            markets=registry,
        )
        for n in range(accounts)
    ]
    build_s, build_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    gate = asyncio.Semaphore(CONCURRENCY)
    errors = 0

    async def snapshot(exchange: CcxtExchange) -> None:
        nonlocal errors
        async with gate:
            try:
                await exchange.fetch_snapshot()
            except Exception:
                errors += 1

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(snapshot(exchange) for exchange in built))
    snapshots_s, snapshots_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    figures = {
        "rss_mib": _peak_rss_mib(),
        "build_s": round(build_s, 2),
        "build_cpu_s": round(build_cpu_s, 2),
        "snapshots_s": round(snapshots_s, 2),
        "snapshots_cpu_s": round(snapshots_cpu_s, 2),
        "errors": errors,
    }
    await asyncio.gather(*(exchange.close() for exchange in built))
    return figures


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, accounts, url = sys.argv[2], int(sys.argv[3]), sys.argv[4]
        print(json.dumps(asyncio.run(_run_child(mode, accounts, url))))
        return
    accounts = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    unshared = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    print(json.dumps(rss_1000_ccxt_accounts(accounts, unshared), indent=2))


if __name__ == "__main__":
    main()
