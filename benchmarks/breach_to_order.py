"""`breach_to_order_ms`: from a mark moving past an account's trigger at the venue to the
reduce-only order arriving at the venue's order endpoint (issue 10, the streaming trigger).

Everything is the production path, in one process: the paper venue's aiohttp app (the
one `levbot paper-exchange` serves: Binance USDⓈ-M REST + the markPrice websocket), a
real CcxtExchange on it, an AccountService on a SQLite journal, and a TriggerWatcher
on ccxt.pro binanceusdm. Each trial starts from a fresh venue and account at 4x (band
3-5, no collateral to move, so the cycle must sell), moves the mark just past the trigger
the poll's cycle left, and times the order's arrival. Between trials the venue puts the
account back at 4x (the venue's order history kept) and the poll's cycle runs again.

Two figures: the venue pushing the moved mark at once (what the bot adds), and the
venue pushing on Binance's one-second beat (`@markPrice@1s`), which adds the wait for
the next beat (0-1 s).

Run alone: `python -m benchmarks.breach_to_order [trials]`.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from aiohttp import web

from bot.app.service import AccountRuntime, AccountService
from bot.app.triggers import StreamSettings, TriggerWatcher
from bot.clock import utc_now
from bot.domain.models import MarginMode, Side
from bot.domain.targets import Policy, Prefer, Target, Targets
from bot.exchange.ccxt import CcxtExchange, CcxtSettings
from bot.exchange.ccxt.stream import CcxtMarkStream
from bot.exchange.paper_venue import FaultPlan, PaperVenue, Signer, VenueBook, VenueOptions
from bot.exchange.paper_venue.stream import MARK_STREAMS
from bot.exchange.sim.paper import BUILTIN_FEED, PaperSettings
from bot.store.journal import Journal

RESULTS = Path(__file__).parent / "results.json"
BTC = "BTC/USDT:USDT"
KEYS = {"api_key": "bench-api-key", "secret": "bench-secret"}
GOAL_MS = 1000.0
TRIAL_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Figures:
    trials: int
    median_ms: float
    p90_ms: float
    worst_ms: float
    best_ms: float

    def as_json(self) -> dict[str, float | int]:
        return {
            "trials": self.trials,
            "median_ms": round(self.median_ms, 1),
            "p90_ms": round(self.p90_ms, 1),
            "worst_ms": round(self.worst_ms, 1),
            "best_ms": round(self.best_ms, 1),
        }


def _paper_settings() -> PaperSettings:
    # One candle an hour: the replay never moves the mark during a trial.
    return PaperSettings(
        account="bench", symbol=BTC, side=Side.LONG, equity=Decimal(10000),
        reserve=Decimal(0), leverage=Decimal(4), margin_mode=MarginMode.CROSS,
        bar_seconds=3600.0, fee=Decimal("0.0005"), slippage=Decimal("0.0005"),
        loop=False, feed=BUILTIN_FEED, state_file=None,
    )  # fmt: skip


async def measure_breaches(folder: Path, trials: int, on_change: bool) -> Figures:
    """`trials` breaches on one venue and one account, put back at 4x between them."""
    book = VenueBook(_paper_settings(), utc_now, None)
    venue = PaperVenue(
        book, FaultPlan("", 7), Signer(KEYS["api_key"], KEYS["secret"]),
        VenueOptions(max_latency_seconds=0.0),
    )  # fmt: skip
    app = venue.app()
    streams = app[MARK_STREAMS]
    arrivals: asyncio.Queue[float] = asyncio.Queue()

    @web.middleware
    async def order_clock(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.method == "POST" and request.path == "/fapi/v1/order":
            arrivals.put_nowait(time.perf_counter())
        return await handler(request)

    app.middlewares.append(order_clock)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    settings = CcxtSettings(
        account="bench", exchange_id="binanceusdm", environment="live",
        credentials=KEYS, api_base_url=url, symbols=(BTC,),
    )  # fmt: skip
    name = "pushed" if on_change else "beat"
    journal = await Journal.open(f"sqlite:///{folder}/bench-{name}.sqlite")
    exchange = CcxtExchange(settings)
    runtime = AccountRuntime(
        name="bench", exchange=exchange,
        targets=Targets(Target(Decimal(4), Decimal(3), Decimal(5))),
        # No cooldown: every trial is a fresh breach of the same account.
        policy=Policy(prefer=Prefer.ORDERS, cooldown=timedelta(0)),
        interval=timedelta(minutes=5),
    )  # fmt: skip
    service = AccountService(runtime, journal, utc_now)
    debounce = timedelta(seconds=1)
    watcher = TriggerWatcher(
        service,
        CcxtMarkStream.for_account(settings),
        journal,
        StreamSettings(True, debounce, timedelta(seconds=60)),
    )
    at_four = book.paper.sim.state()
    samples: list[float] = []
    next_breach = 0.0
    try:
        for index in range(trials):
            # Back to 4x at the first bar's mark (orders kept: the venue's history).
            now = book.paper.sim.state()
            book.paper.sim.restore(replace(at_four, orders=now.orders, next_id=now.next_id))
            streams.poke()
            await service.run_cycle()  # the poll's cycle: in band, leaves the triggers
            below = service.triggers[BTC].below
            assert below is not None, "no trigger below the mark"
            if index == 0:
                watcher.start()
                await asyncio.wait_for(watcher.connected.wait(), TRIAL_TIMEOUT)
            # Past the last triggered cycle's debounce window, and (for the beat) at a
            # spread of points within the venue's one-second beat.
            spread = 0.0 if on_change else index * 0.37 % 1
            await asyncio.sleep(max(0.0, next_breach - time.perf_counter()) + spread)
            breach = below * Decimal("0.999")
            moved = time.perf_counter()
            next_breach = moved + debounce.total_seconds() + 0.05
            if on_change:
                streams.set_mark(BTC, breach)
            else:
                book.paper.sim.set_mark(BTC, breach)  # pushed at the next beat
            order_at = await asyncio.wait_for(arrivals.get(), TRIAL_TIMEOUT)
            samples.append((order_at - moved) * 1000)
            # The triggered cycle verifies its order before the account is put back (the
            # service tells `busy`, it has no event to wait on).
            while service.busy:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        await watcher.stop()
        await exchange.close()
        await journal.close()
        await runner.cleanup()
    samples.sort()
    return Figures(
        trials=len(samples),
        median_ms=statistics.median(samples),
        p90_ms=samples[int(0.9 * (len(samples) - 1))],
        worst_ms=samples[-1],
        best_ms=samples[0],
    )


async def _both(trials: int) -> tuple[Figures, Figures]:
    with tempfile.TemporaryDirectory() as folder:
        pushed = await measure_breaches(Path(folder), trials, on_change=True)
        beat = await measure_breaches(Path(folder), trials, on_change=False)
    return pushed, beat


def record(name: str, figures: dict[str, object]) -> None:
    """Merge `figures` under `name` into benchmarks/results.json."""
    try:
        document = json.loads(RESULTS.read_text())
    except (FileNotFoundError, ValueError):
        document = {}
    document[name] = figures
    RESULTS.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def bench_breach_to_order(trials: int = 50) -> None:
    pushed, beat = asyncio.run(_both(trials))
    record(
        "breach_to_order_ms",
        {
            "goal_ms": GOAL_MS,
            "push_on_change": pushed.as_json(),
            "binance_1s_beat": beat.as_json(),
        },
    )
    for label, figures in (("pushed at once", pushed), ("Binance 1 s beat", beat)):
        print(
            f"breach to order ({label}): {figures.trials} trials, median "
            f"{figures.median_ms:.0f} ms, p90 {figures.p90_ms:.0f} ms, worst "
            f"{figures.worst_ms:.0f} ms (goal < {GOAL_MS:.0f} ms)"
        )


if __name__ == "__main__":
    bench_breach_to_order(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
