"""The streaming trigger: a mark past a trigger runs the account's cycle at once.

The account is a real AccountService on the simulated exchange (marks streamed by the
real PaperMarkStream), or a small fake of the three things the watcher calls when the
test must hold a cycle open; the drop and shutdown cases run real ccxt.pro against the
paper venue's markPrice websocket.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from bot.app.service import AccountRuntime, AccountService
from bot.app.triggers import StreamSettings, TriggerWatcher
from bot.backtest.journal import MemoryJournal
from bot.clock import utc_now
from bot.domain.leverage import ScopeMetrics
from bot.domain.models import Side
from bot.domain.summary import account_metrics
from bot.domain.targets import Policy, Target, Targets
from bot.domain.triggers import MarkTrigger
from bot.domain.vocabulary import AlertLevel
from bot.exchange.ccxt.stream import CcxtMarkStream, build_stream_exchange
from bot.exchange.sim.exchange import SimulatedExchange
from bot.exchange.sim.markets import binance_usdm_markets
from bot.exchange.sim.paper_stream import PaperMarkStream
from bot.exchange.streams import MarkTick, StreamDropped
from tests.integration.exchange.test_ccxt_stream import binance_settings, streaming_venue
from tests.integration.exchange.venues import quicken

BTC = "BTC/USDT:USDT"


def settings(debounce: float = 0.2, max_backoff: float = 0.8) -> StreamSettings:
    return StreamSettings(
        enabled=True,
        debounce=timedelta(seconds=debounce),
        max_backoff=timedelta(seconds=max_backoff),
    )


class Alerts:
    """The outbox, as the watcher sees it."""

    def __init__(self) -> None:
        self.sent: list[tuple[AlertLevel, str]] = []

    async def enqueue_alert(self, level: AlertLevel, text: str, at: datetime | None = None) -> int:
        self.sent.append((level, text))
        return len(self.sent)


class QueueStream:
    """A MarkStream fed by the test: ticks, or an error to raise."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[MarkTick | Exception] = asyncio.Queue()
        self.watches: list[tuple[str, ...]] = []
        self.closed = False

    def mark(self, price: str, symbol: str = BTC) -> None:
        self.queue.put_nowait(MarkTick(symbol, Decimal(price), utc_now()))

    async def watch(self, symbols: Sequence[str]) -> AsyncGenerator[MarkTick, None]:
        self.watches.append(tuple(symbols))
        while True:
            item = await self.queue.get()
            if isinstance(item, Exception):
                raise item
            yield item

    async def close(self) -> None:
        self.closed = True


class FakeAccount:
    """name, triggers, run_cycle: what the watcher calls. A cycle takes `hold` (an event
    the test sets) and leaves the triggers `after_cycle` returns."""

    def __init__(
        self,
        below: str,
        after_cycle: Callable[[int], Mapping[str, MarkTrigger]] | None = None,
    ) -> None:
        self.name = "fake"
        self.triggers: Mapping[str, MarkTrigger] = {BTC: trigger(below)}
        self.after_cycle = after_cycle
        self.started: list[float] = []
        self.finished = 0
        self.hold: asyncio.Event | None = None
        self.running = asyncio.Event()

    async def run_cycle(self) -> object:
        self.started.append(time.monotonic())
        self.running.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.after_cycle is not None:
            self.triggers = self.after_cycle(len(self.started))
        self.finished += 1
        self.running.clear()
        return None


def trigger(below: str) -> MarkTrigger:
    return MarkTrigger(BTC, Decimal(below), None, "leverage above 3.5", "")


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


# -- a real account -----------------------------------------------------------------------


async def test_trigger_watcher_when_mark_crosses_then_real_cycle_delevers_at_once() -> None:
    exchange = SimulatedExchange(
        markets=binance_usdm_markets(), clock=utc_now, derivatives=Decimal(10000),
        source=Decimal(5000), account="main",
    )  # fmt: skip
    exchange.set_mark(BTC, Decimal(50000))
    exchange.open_position(BTC, Side.LONG, Decimal("0.6"))  # 3x
    runtime = AccountRuntime(
        name="main", exchange=exchange,
        targets=Targets(Target(Decimal(3), Decimal("2.5"), Decimal("3.5"))),
        policy=Policy(), interval=timedelta(minutes=5),
    )  # fmt: skip
    service = AccountService(runtime, MemoryJournal(utc_now), utc_now)
    await service.run_cycle()  # the poll's first cycle leaves the triggers
    below = service.triggers[BTC].below
    assert below is not None and below < Decimal(50000)
    watcher = TriggerWatcher(
        service, PaperMarkStream(exchange, every_seconds=0.01), Alerts(), settings()
    )
    watcher.start()
    try:
        await asyncio.sleep(0.05)
        assert watcher.stats.triggered_cycles == 0  # 50000 is inside the band
        exchange.set_mark(BTC, below - 100)
        await until(lambda: watcher.stats.triggered_cycles == 1 and not service.busy)
        await until(lambda: service.last_report is not None and bool(service.last_report.outcomes))
    finally:
        await watcher.stop()
    after: ScopeMetrics = account_metrics(await exchange.fetch_snapshot())
    assert after.leverage is not None and after.leverage <= Decimal("3.01")
    assert watcher.stats.last_reason
    # The fresh triggers are below the new mark: the next tick is calm.
    new_below = service.triggers[BTC].below
    assert new_below is not None and new_below < below - 100


# -- timing, on a fake account ---------------------------------------------------------------


async def test_trigger_watcher_when_crossings_come_in_a_burst_then_one_cycle_per_window() -> None:
    account = FakeAccount("100", after_cycle=lambda n: {BTC: trigger(str(100 - 10 * n))})
    stream = QueueStream()
    watcher = TriggerWatcher(account, stream, Alerts(), settings(debounce=0.3))
    watcher.start()
    try:
        stream.mark("99")  # crosses 100: cycle 1, which moves the trigger to 90
        await until(lambda: account.finished == 1)
        for price in ("89", "88", "87"):  # cross 90 within the window
            stream.mark(price)
        await until(lambda: account.finished == 2)
        await asyncio.sleep(0.4)
    finally:
        await watcher.stop()
    assert len(account.started) == 2
    assert account.started[1] - account.started[0] >= 0.29
    assert watcher.stats.crossings == 2  # 99 past 100, then 89 past 90: told once each


async def test_trigger_watcher_when_crossing_during_a_cycle_then_one_more_right_after() -> None:
    # The cycle's snapshot predates the move to 93: it leaves a trigger at 94.
    account = FakeAccount("100", after_cycle=lambda n: {BTC: trigger("94" if n == 1 else "50")})
    account.hold = asyncio.Event()
    stream = QueueStream()
    watcher = TriggerWatcher(account, stream, Alerts(), settings(debounce=0.05))
    watcher.start()
    try:
        stream.mark("99")
        await until(account.running.is_set)
        for price in ("97", "95", "93"):
            stream.mark(price)
        await asyncio.sleep(0.05)
        account.hold.set()
        await until(lambda: account.finished == 2)
        await asyncio.sleep(0.3)
    finally:
        await watcher.stop()
    assert account.finished == 2  # one more, not one per crossing


async def test_trigger_watcher_when_cycle_fixes_it_then_crossings_seen_during_it_run_nothing() -> (
    None
):
    account = FakeAccount("100", after_cycle=lambda n: {BTC: trigger("80")})
    account.hold = asyncio.Event()
    stream = QueueStream()
    watcher = TriggerWatcher(account, stream, Alerts(), settings(debounce=0.05))
    watcher.start()
    try:
        stream.mark("99")
        await until(account.running.is_set)
        stream.mark("98")
        await asyncio.sleep(0.02)
        account.hold.set()
        await until(lambda: account.finished == 1)
        await asyncio.sleep(0.2)
    finally:
        await watcher.stop()
    assert account.finished == 1


async def test_trigger_watcher_when_cycles_cannot_act_then_window_doubles_until_calm() -> None:
    # A paused account: every cycle leaves the trigger where the mark is.
    account = FakeAccount("100", after_cycle=lambda n: {BTC: trigger("99")})
    stream = QueueStream()
    watcher = TriggerWatcher(account, stream, Alerts(), settings(debounce=0.1, max_backoff=0.4))
    watcher.start()
    try:
        stream.mark("99")
        await asyncio.sleep(1.3)
        futile = len(account.started)
        stream.mark("120")  # calm: the window is back to the debounce
        account.after_cycle = lambda n: {BTC: trigger("100")}
        await asyncio.sleep(0.05)
        stream.mark("99")
        await until(lambda: len(account.started) == futile + 1)
    finally:
        await watcher.stop()
    gaps = [b - a for a, b in zip(account.started, account.started[1:futile], strict=False)]
    # 0.2, 0.4, 0.4 ... instead of a cycle every 0.1 s.
    assert 3 <= futile <= 5
    assert gaps[0] >= 0.19 and all(gap >= 0.39 for gap in gaps[1:])
    assert account.started[futile] - account.started[futile - 1] < 0.4 + 0.1 + 0.2


async def test_trigger_watcher_when_no_trigger_then_nothing_is_watched() -> None:
    account = FakeAccount("100")
    account.triggers = {}
    stream = QueueStream()
    watcher = TriggerWatcher(account, stream, Alerts(), settings())
    watcher.start()
    try:
        await asyncio.sleep(0.05)
        account.triggers = {BTC: trigger("100")}
        await until(lambda: bool(stream.watches), within=3)
    finally:
        await watcher.stop()
    assert stream.watches == [(BTC,)]


# -- a dropped stream -----------------------------------------------------------------


async def test_trigger_watcher_when_stream_drops_then_alert_once_reconnect_and_alert_back() -> None:
    account = FakeAccount("100")
    stream = QueueStream()
    alerts = Alerts()
    watcher = TriggerWatcher(
        account, stream, alerts, settings(max_backoff=0.2), first_backoff_seconds=0.05
    )
    watcher.start()
    try:
        stream.mark("120")
        await until(lambda: watcher.stats.ticks == 1)
        for _ in range(3):  # three failed connections in a row: one alert
            stream.queue.put_nowait(StreamDropped("binanceusdm: connection closed"))
        await until(lambda: watcher.stats.drops == 3)
        stream.mark("119")
        await until(lambda: watcher.stats.reconnects == 1)
    finally:
        await watcher.stop()
    assert [level for level, _ in alerts.sent] == [AlertLevel.WARNING, AlertLevel.INFO]
    assert "protecting by polling only" in alerts.sent[0][1]
    assert "connection closed" in alerts.sent[0][1]
    assert "back" in alerts.sent[1][1]
    assert len(stream.watches) == 4


async def test_trigger_watcher_when_venue_hangs_up_the_websocket_then_recovers() -> None:
    async with streaming_venue(push_seconds=30) as venue:
        account = FakeAccount("1000")  # far below the venue's mark: no cycle
        alerts = Alerts()
        exchange = quicken(build_stream_exchange(binance_settings(venue.url)))
        watcher = TriggerWatcher(
            account, CcxtMarkStream(exchange), alerts, settings(), first_backoff_seconds=0.05
        )
        watcher.start()
        try:
            await until(lambda: watcher.stats.ticks >= 1)
            await asyncio.sleep(0.05)
            await venue.streams.hang_up()
            await until(lambda: watcher.stats.reconnects == 1)
        finally:
            await watcher.stop()
    assert [level for level, _ in alerts.sent] == [AlertLevel.WARNING, AlertLevel.INFO]
    assert "Connection closed" in alerts.sent[0][1]
    assert account.started == []


# -- shutdown --------------------------------------------------------------------------


async def test_trigger_watcher_when_stopped_mid_cycle_then_cycle_finishes_and_stream_closes() -> (
    None
):
    # The cycle fixes it: nothing is past a trigger once it ends.
    account = FakeAccount("100", after_cycle=lambda n: {BTC: trigger("50")})
    account.hold = asyncio.Event()
    stream = QueueStream()
    watcher = TriggerWatcher(account, stream, Alerts(), settings())
    watcher.start()
    stream.mark("99")
    await until(account.running.is_set)
    stopping = asyncio.create_task(watcher.stop(drain_seconds=5))
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waits for the running cycle
    account.hold.set()
    await asyncio.wait_for(stopping, 2)
    assert account.finished == 1
    assert stream.closed


async def test_trigger_watcher_when_stopped_on_a_live_ccxt_stream_then_clients_close() -> None:
    async with streaming_venue() as venue:
        exchange = quicken(build_stream_exchange(binance_settings(venue.url)))
        watcher = TriggerWatcher(
            FakeAccount("1000"), CcxtMarkStream(exchange), Alerts(), settings()
        )
        watcher.start()
        await until(lambda: watcher.stats.ticks >= 1)
        await watcher.stop()
        assert exchange.clients == {}
        assert exchange.session is None
        await asyncio.sleep(0.05)
        assert venue.streams.connections == 0
